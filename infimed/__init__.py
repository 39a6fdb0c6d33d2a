"""InfiMed: medical multimodal LLMs (InfiMed-Foundation, InfiMed-SFT/RL) in the Hugging Face ecosystem.

Importing ``infimed`` registers the InfiMed classes with the transformers Auto classes (the only import-time side
effect). Everything else is imported on first use.
"""

__version__ = "0.1.0"
