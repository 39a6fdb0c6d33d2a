"""The places where InfiMed's trainers rely on TRL 1.16 internals that offer no hook, each in one named function.

`tests/training/test_trl_compat.py` reads TRL's source and fails loudly when one of these assumptions stops holding, so a TRL
upgrade breaks a test named after the assumption rather than a training run.

- `hidden_from_trl_init`: `SFTTrainer.__init__` refuses `packing=True` on vision datasets in one inline check (it has
  no multimodal packer; InfiMedSFTTrainer packs itself), and `GRPOTrainer.__init__` reloads a reference model from
  `config._name_or_path` when `beta != 0` (InfiMedGRPOTrainer copies the policy in memory instead). Neither is a
  method a subclass could override, so those settings are hidden from the constructor and restored after it.
- `with_empty_image_lists`: `GRPOTrainer._generate` returns a plain tuple; its `images` field marks a text-only
  prompt's images as `None`, which processors cannot flatten in a batch that also has images.
"""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["GENERATE_OUTPUT_FIELDS", "hidden_from_trl_init", "with_empty_image_lists"]

# `GRPOTrainer._generate`'s return tuple in TRL 1.16, by name (tests/training/test_trl_compat.py checks it against TRL).
GENERATE_OUTPUT_FIELDS = (
    "prompt_ids", "completion_ids", "tool_mask", "completions", "logprobs", "extra_fields", "images", "tool_images",
)


@contextmanager
def hidden_from_trl_init(args, **values):
    """Set the `args` fields in `values` while a TRL trainer's `__init__` runs; restore them afterwards.

        with hidden_from_trl_init(args, packing=False):   # the one check TRL 1.16 makes against vision packing
            super().__init__(model=model, args=args, ...)
    """
    saved = {name: getattr(args, name) for name in values}
    for name, value in values.items():
        setattr(args, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(args, name, value)


def with_empty_image_lists(outputs: tuple) -> tuple:
    """`GRPOTrainer._generate`'s `outputs` with each text-only prompt's images `[]` instead of `None`.

    TRL marks a text-only prompt's images as None; a batch mixing text-only and image prompts then reaches the
    processor as `[None, [img], ...]`, which it cannot flatten. An empty list per text-only prompt is the form
    processors accept (`num_images` counts it as 0 either way).
    """
    if len(outputs) != len(GENERATE_OUTPUT_FIELDS):
        raise RuntimeError(
            f"`GRPOTrainer._generate` returned {len(outputs)} values; InfiMed expects {GENERATE_OUTPUT_FIELDS} (TRL "
            "1.16). Update `infimed.training.trl_compat.GENERATE_OUTPUT_FIELDS` to the installed TRL."
        )
    fields = dict(zip(GENERATE_OUTPUT_FIELDS, outputs))
    images = fields["images"]
    if images is not None and any(item is None for item in images) and any(images):
        fields["images"] = [item if item is not None else [] for item in images]
    return tuple(fields.values())
