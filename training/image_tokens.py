"""The visual-token count of a run: set once, on the model config and the processor, before the trainer is built.

InfiMed models fall back to `config.num_image_tokens` when a call passes none, so generation, the training forward
and a reference model copied from the policy all use it, and the saved checkpoint generates at it by default.
`forward(num_image_tokens=...)` still overrides it for one call.
"""

from __future__ import annotations

import dataclasses
import logging

__all__ = ["set_num_image_tokens", "set_pixel_bounds"]

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


def set_pixel_bounds(processor, min_pixels: int | None, max_pixels: int | None, where: str = "this run") -> dict:
    """Bound the image size of a dynamic-resolution processor (Qwen2.5-VL: `size.shortest_edge`/`longest_edge` are
    its min/max pixels), which bounds its visual tokens per image. Returns the bounds applied (logged when ignored)."""
    wanted = {k: v for k, v in (("shortest_edge", min_pixels), ("longest_edge", max_pixels)) if v is not None}
    if not wanted:
        return {}
    image_processor = getattr(processor, "image_processor", None)
    size = getattr(image_processor, "size", None)
    if image_processor is None or getattr(image_processor, "merge_size", None) is None or size is None:
        logger.warning("`min_pixels`/`max_pixels` are ignored (set by %s): %s has fixed-size images.", where,
                       type(image_processor or processor).__name__)
        return {}
    low = wanted.get("shortest_edge", size["shortest_edge"])
    high = wanted.get("longest_edge", size["longest_edge"])
    if low > high:
        raise ValueError(f"{where}: `min_pixels` ({low}) is larger than `max_pixels` ({high}) of the processor.")
    # A new size (transformers' `SizeDict` is a dataclass; older releases use a plain dict), saved with the processor.
    image_processor.size = (dataclasses.replace(size, shortest_edge=low, longest_edge=high)
                            if dataclasses.is_dataclass(size) else {**size, "shortest_edge": low, "longest_edge": high})
    return {"min_pixels": low, "max_pixels": high}
