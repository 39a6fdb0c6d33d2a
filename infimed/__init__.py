"""InfiMed: medical multimodal LLMs (InfiMed-Foundation, InfiMed-SFT/RL) in the Hugging Face ecosystem.

Importing ``infimed`` registers the InfiMed classes with the transformers Auto classes and marks them for remote
code, so `save_pretrained` writes `auto_map` and copies the code next to the weights. That registration is the only
import-time side effect.
"""

from ._registration import register

__version__ = "0.1.0"

register()

__all__ = ["__version__", "register"]
