"""InfiMed processing: image loading (incl. DICOM), image processor, processor with chat template, tiny tokenizer."""

from .image_processing_infimed import InfiMedImageProcessor
from .processing_infimed import CHAT_TEMPLATE, InfiMedProcessor

from infimed._registration import register_processor_classes
from infimed.modeling import InfiMedConfig

register_processor_classes(InfiMedConfig, InfiMedImageProcessor, InfiMedProcessor)

__all__ = ["CHAT_TEMPLATE", "InfiMedImageProcessor", "InfiMedProcessor"]
