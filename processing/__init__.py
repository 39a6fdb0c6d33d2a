"""InfiMed processing: image loading (incl. DICOM), image processor, processor with chat template, tiny tokenizer."""

from .image_processing_infimed import InfiMedImageProcessor
from .processing_infimed import CHAT_TEMPLATE, InfiMedProcessor

__all__ = ["CHAT_TEMPLATE", "InfiMedImageProcessor", "InfiMedProcessor"]
