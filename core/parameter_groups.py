"""The one table of parameter groups of a vision-language model: `vision`, `projector`, `llm`, by name prefix.

Training (`infimed.training.modules.set_trainable`) freezes and counts by it, model cards count parameters by it.
It knows the transformers v5 VLM layouts of InfiMed (`model.vision_tower`, `model.multi_modal_projector`,
`model.language_model` + `lm_head`) and of the Qwen2-VL family (`model.visual`, whose `merger` is the projector).
"""

from __future__ import annotations

__all__ = ["MODULE_GROUPS", "PARAMETER_PREFIXES", "module_group"]

MODULE_GROUPS = ("vision", "projector", "llm")

# (group, prefix), checked in order, so the projector prefixes win over the Qwen vision tower that contains its merger.
PARAMETER_PREFIXES: tuple[tuple[str, str], ...] = (
    ("projector", "model.multi_modal_projector."),
    ("projector", "model.visual.merger."),  # Qwen2.5-VL: the patch merger is its projector
    ("vision", "model.vision_tower."),
    ("vision", "model.visual."),
    ("llm", "model.language_model."),
    ("llm", "lm_head."),
)


def module_group(parameter_name: str) -> str | None:
    """The group (`vision`, `projector`, `llm`) a parameter belongs to, or `None` if no prefix matches."""
    for group, prefix in PARAMETER_PREFIXES:
        if parameter_name.startswith(prefix):
            return group
    return None
