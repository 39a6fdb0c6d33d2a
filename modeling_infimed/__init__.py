"""InfiMed model: configuration, model classes and presets.

Importing this package registers the classes with the transformers Auto classes and marks them for remote code, so
`save_pretrained` writes `auto_map` and copies the defining files next to the weights (docs/remote-code.md). It also
registers the `sdpa_varlen` attention kernel for packed rows (`sdpa_varlen.py`, docs/packing.md).
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_infimed import InfiMedConfig
from .modeling_infimed import (
    InfiMedForConditionalGeneration,
    InfiMedModel,
    InfiMedPreTrainedModel,
    InfiMedProjector,
)
from .presets import PRESETS, build_config, build_model, count_parameters
from .sdpa_varlen import SDPA_VARLEN
from .sdpa_varlen import register as register_sdpa_varlen

AutoConfig.register(InfiMedConfig.model_type, InfiMedConfig, exist_ok=True)
AutoModel.register(InfiMedConfig, InfiMedModel, exist_ok=True)
AutoModelForImageTextToText.register(InfiMedConfig, InfiMedForConditionalGeneration, exist_ok=True)
InfiMedConfig.register_for_auto_class("AutoConfig")
InfiMedModel.register_for_auto_class("AutoModel")
InfiMedForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")
register_sdpa_varlen()

__all__ = [
    "PRESETS",
    "SDPA_VARLEN",
    "InfiMedConfig",
    "InfiMedForConditionalGeneration",
    "InfiMedModel",
    "InfiMedPreTrainedModel",
    "InfiMedProjector",
    "build_config",
    "build_model",
    "count_parameters",
]
