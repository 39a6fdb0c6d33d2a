"""InfiMed processing: image loading (incl. DICOM), image processor, processor with chat template, tiny tokenizer.

Importing this package registers the image processor and processor with the transformers Auto classes, keyed by
`InfiMedConfig` (AutoProcessor needs the config class, not a model-type string), and marks them for remote code.
"""

from transformers import AutoImageProcessor, AutoProcessor

from infimed.modeling import InfiMedConfig

from .image_processing_infimed import InfiMedImageProcessor
from .processing_infimed import CHAT_TEMPLATE, InfiMedProcessor
from .processing_qwen_vl import QwenVLImageTextProcessor

AutoImageProcessor.register(InfiMedConfig, slow_image_processor_class=InfiMedImageProcessor, exist_ok=True)
AutoProcessor.register(InfiMedConfig, InfiMedProcessor, exist_ok=True)
InfiMedImageProcessor.register_for_auto_class("AutoImageProcessor")
InfiMedProcessor.register_for_auto_class("AutoProcessor")
# AutoProcessor finds a registered processor by the `processor_class` name a checkpoint records; registration needs a
# key, and the class itself is one no config ever is, so no model type (Qwen2.5-VL's included) changes processor.
AutoProcessor.register(QwenVLImageTextProcessor, QwenVLImageTextProcessor, exist_ok=True)

__all__ = ["CHAT_TEMPLATE", "InfiMedImageProcessor", "InfiMedProcessor", "QwenVLImageTextProcessor"]
