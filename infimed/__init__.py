"""InfiMed: medical multimodal LLMs (InfiMed-Foundation, InfiMed-SFT/RL) in the Hugging Face ecosystem.

The public classes are imported on first use, so `import infimed` stays light: it imports neither torch nor
transformers, and `infimed --help` never imports torch (`tests/cli/test_public_api.py` holds both).

    from infimed import InfiMedForConditionalGeneration, InfiMedProcessor

Importing the model or processor classes registers them with the transformers Auto classes and marks them for remote
code (so `save_pretrained` writes `auto_map` and copies the code next to the weights). Call `infimed.register()` to
register without touching a class, e.g. before `AutoModelForImageTextToText.from_pretrained(folder)`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the subpackage that defines it
_EXPORTS = {
    "InfiMedConfig": "infimed.modeling",
    "InfiMedModel": "infimed.modeling",
    "InfiMedForConditionalGeneration": "infimed.modeling",
    "InfiMedProcessor": "infimed.processing",
    "InfiMedImageProcessor": "infimed.processing",
    "InfiMedSFTConfig": "infimed.training",
    "InfiMedSFTTrainer": "infimed.training",
    "InfiMedGRPOConfig": "infimed.training",
    "InfiMedGRPOTrainer": "infimed.training",
}

__all__ = ["__version__", "register", *_EXPORTS]

if TYPE_CHECKING:
    from infimed.modeling import InfiMedConfig, InfiMedForConditionalGeneration, InfiMedModel
    from infimed.processing import InfiMedImageProcessor, InfiMedProcessor
    from infimed.training import InfiMedGRPOConfig, InfiMedGRPOTrainer, InfiMedSFTConfig, InfiMedSFTTrainer


def register() -> None:
    """Register the InfiMed config, models, image processor and processor with the transformers Auto classes."""
    # Each subpackage registers its classes when it is first imported (modeling_infimed/ and processing/ __init__).
    importlib.import_module("infimed.modeling")
    importlib.import_module("infimed.processing")


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'infimed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
