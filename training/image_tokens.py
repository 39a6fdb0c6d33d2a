"""The visual-token count of a run: set once, on the model config and the processor, before the trainer is built.

InfiMed models fall back to `config.num_image_tokens` when a call passes none, so generation, the training forward
and a reference model copied from the policy all use it, and the saved checkpoint generates at it by default.
`forward(num_image_tokens=...)` still overrides it for one call.
"""

from __future__ import annotations

import logging

__all__ = ["set_num_image_tokens"]

logger = logging.getLogger(__name__)


def set_num_image_tokens(model, processor, num_image_tokens: int | None, where: str = "this run") -> int | None:
    """Give `model.config` and `processor` (when given) `num_image_tokens`, validated against the patch grid.

    Returns the count applied, or None when there is none to apply: `num_image_tokens` is None, or the model has no
    fixed count per image (e.g. the dynamic-resolution Qwen2.5-VL, whose count follows the image size; logged).
    """
    if num_image_tokens is None:
        return None
    if not hasattr(model.config, "num_image_tokens") or (processor is not None
                                                          and not hasattr(processor, "num_image_tokens")):
        logger.warning("`num_image_tokens=%d` is ignored (set by %s): %s has no fixed visual-token count (it follows "
                       "the image size).", num_image_tokens, where, type(model).__name__)
        return None
    validate = getattr(model.config, "validate_num_image_tokens", None)
    if validate is not None:
        validate(num_image_tokens)  # raises a ValueError naming the valid counts (square grids up to the patch grid)
    model.config.num_image_tokens = int(num_image_tokens)
    if processor is not None:
        processor.num_image_tokens = int(num_image_tokens)
    return int(num_image_tokens)
