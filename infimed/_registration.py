"""Registration of the InfiMed classes with the transformers Auto classes (idempotent)."""

from __future__ import annotations

__all__ = ["register"]

_DONE = False


def register() -> None:
    """Register config, models, image processor and processor; mark them for remote-code saving."""
    global _DONE
    if _DONE:
        return
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForImageTextToText,
        AutoProcessor,
    )

    from infimed.modeling import InfiMedConfig, InfiMedForConditionalGeneration, InfiMedModel
    from infimed.processing import InfiMedImageProcessor, InfiMedProcessor

    AutoConfig.register(InfiMedConfig.model_type, InfiMedConfig, exist_ok=True)
    AutoModel.register(InfiMedConfig, InfiMedModel, exist_ok=True)
    AutoModelForImageTextToText.register(InfiMedConfig, InfiMedForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(InfiMedConfig, slow_image_processor_class=InfiMedImageProcessor, exist_ok=True)
    AutoProcessor.register(InfiMedConfig, InfiMedProcessor, exist_ok=True)

    # Remote code: save_pretrained copies the defining files and writes `auto_map` for these Auto classes.
    InfiMedConfig.register_for_auto_class("AutoConfig")
    InfiMedModel.register_for_auto_class("AutoModel")
    InfiMedForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
    InfiMedImageProcessor.register_for_auto_class("AutoImageProcessor")
    InfiMedProcessor.register_for_auto_class("AutoProcessor")
    _DONE = True
