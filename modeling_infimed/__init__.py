"""InfiMed model: configuration, model classes, presets and composition from pretrained parts."""

from .configuration_infimed import InfiMedConfig
from .modeling_infimed import (
    InfiMedForConditionalGeneration,
    InfiMedModel,
    InfiMedPreTrainedModel,
    InfiMedProjector,
)
from .presets import PRESETS, build_config, build_model, count_parameters

from infimed._registration import register_model_classes

register_model_classes(InfiMedConfig, InfiMedModel, InfiMedForConditionalGeneration)

__all__ = [
    "PRESETS",
    "InfiMedConfig",
    "InfiMedForConditionalGeneration",
    "InfiMedModel",
    "InfiMedPreTrainedModel",
    "InfiMedProjector",
    "build_config",
    "build_model",
    "count_parameters",
]
