"""Registration of the InfiMed classes with the transformers Auto classes (idempotent).

`infimed.modeling` and `infimed.processing` call these when they are imported: registering where the classes are
defined is the one import-time side effect the package has, as for transformers' own model folders.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageTextToText, AutoProcessor

__all__ = ["register_model_classes", "register_processor_classes"]


def register_model_classes(config_class, model_class, generation_class) -> None:
    """Config + base model + image-text-to-text model; remote-code saving writes their `auto_map` entries."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForImageTextToText.register(config_class, generation_class, exist_ok=True)
    config_class.register_for_auto_class("AutoConfig")
    model_class.register_for_auto_class("AutoModel")
    generation_class.register_for_auto_class("AutoModelForImageTextToText")


def register_processor_classes(config_class, image_processor_class, processor_class) -> None:
    """Image processor + processor, keyed by the InfiMed config class (AutoProcessor needs a class, not a string)."""
    AutoImageProcessor.register(config_class, slow_image_processor_class=image_processor_class, exist_ok=True)
    AutoProcessor.register(config_class, processor_class, exist_ok=True)
    image_processor_class.register_for_auto_class("AutoImageProcessor")
    processor_class.register_for_auto_class("AutoProcessor")
