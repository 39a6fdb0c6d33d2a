"""Choose which module groups of a vision-language model train: `vision`, `projector`, `llm`.

    set_trainable(model, ["projector"])            # alignment: only the projector learns
    set_trainable(model, ["projector", "llm"])     # InfiMed-Foundation's stages: the vision encoder stays frozen

Groups are found by parameter-name prefix (`infimed.core.parameter_groups`, the one table), for InfiMed
(`model.vision_tower`, `model.multi_modal_projector`, `model.language_model` + `lm_head`) and for the Qwen2-VL family
(`model.visual`, whose `merger` is the projector).
"""

from __future__ import annotations

from infimed.core.parameter_groups import MODULE_GROUPS, module_group

__all__ = ["set_trainable"]


def set_trainable(model, groups) -> dict[str, int]:
    """Train exactly the parameters of `groups`, freeze every other one; return trainable parameter counts per group.

    Raises `ValueError` for an unknown group, or when a parameter belongs to no group (an architecture this function
    does not know: freezing or training it silently would be a guess).
    """
    groups = list(groups)
    unknown = sorted(set(groups) - set(MODULE_GROUPS))
    if unknown:
        raise ValueError(f"Unknown trainable group(s) {unknown}; choose from {list(MODULE_GROUPS)}.")
    if not groups:
        raise ValueError("`trainable` is empty: list at least one of `vision`, `projector`, `llm`.")
    counts = {group: 0 for group in MODULE_GROUPS}
    unmatched = []
    for name, param in model.named_parameters():
        group = module_group(name)
        if group is None:
            unmatched.append(name)
            continue
        param.requires_grad_(group in groups)
        if group in groups:
            counts[group] += param.numel()
    if unmatched:
        raise ValueError(
            f"{len(unmatched)} parameter(s) belong to no module group (e.g. {unmatched[:3]}): this architecture's "
            f"layout is not known to `infimed.training.modules`. Expected the transformers v5 VLM layout "
            f"(`model.vision_tower`/`model.visual`, `model.multi_modal_projector`, `model.language_model`, `lm_head`)."
        )
    return {group: n for group, n in counts.items() if group in groups}
