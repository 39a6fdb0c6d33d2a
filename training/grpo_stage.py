"""The `grpo` stage of a recipe: GRPO with verifiable rewards (`InfiMedGRPOTrainer`) after the SFT stages.

A stage's trainer keys are `InfiMedGRPOConfig` fields, written next to its data keys (`infimed.training.stages.run_stage`
runs it with the hooks of `GRPO_STAGE`):

    - name: grpo
      type: grpo
      datasets: [{path: demo-output/data, split: train, where: {kind: [yes_no, multiple_choice]}, count: 64}]
      num_image_tokens: 64
      trainable: [projector, llm]
      max_length: 1024              # prompt + completion tokens; longer prompts are dropped (never cut)
      max_steps: 20
      learning_rate: 5.0e-5
      per_device_train_batch_size: 8
      num_generations: 4
      max_completion_length: 32
      reward_funcs: [format, accuracy]
      reward_weights: [0.5, 1.0]

Samples that cannot be rewarded or generated from are dropped before training and counted by reason in the summary
(`bad_image`, `image_count_mismatch`, `empty_answer`, `not_verifiable`, `bad_gold_answer`, `prompt_too_long`, and
`no_user_turn`), with a few example ids per reason.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from infimed.core.answers import score_answer
from infimed.core.datasets import as_image_list
from infimed.core.tasks import SCORED_KINDS
from infimed.processing.image_io import load_image

from .grpo_config import InfiMedGRPOConfig
from .grpo_trainer import InfiMedGRPOTrainer, prepare_grpo_dataset
from .stages import StageType, load_stage_datasets, require_samples

__all__ = ["GRPO_STAGE", "dynamic_image_tokens", "filter_grpo_samples", "reward_curve"]

logger = logging.getLogger(__name__)

# Example ids kept per drop reason in the summary: enough to find the culprits, small enough for a JSON summary.
_EXAMPLES_PER_REASON = 3


def _user_turns_and_placeholders(messages) -> tuple[bool, int]:
    has_user = any(m["role"] == "user" for m in messages)
    placeholders = sum(
        1 for m in messages if isinstance(m["content"], list) for block in m["content"] if block.get("type") == "image"
    )
    return has_user, placeholders


def filter_grpo_samples(dataset, processor, args, max_length: int | None, strict: bool = False):
    """Drop (and count) samples GRPO cannot use; return `(dataset with decoded images, drop counts, examples)`.

    Checked per sample: a user turn exists, every image decodes, one `{"type": "image"}` block per image, a gold
    answer exists, and, when the `accuracy` reward is on, the kind is string-verifiable and the gold answer scores
    as correct against itself; the prompt (with the format instruction, images expanded to `num_image_tokens`)
    leaves room for `max_completion_length` within `max_length`. A dynamic-resolution processor (Qwen2.5-VL) counts
    each image's real tokens (`dynamic_image_tokens`), not one per placeholder.
    """
    needs_gold = "accuracy" in args.reward_funcs
    budget = None if max_length is None else max_length - (args.max_completion_length or 0)
    if budget is not None and budget <= 0:
        raise ValueError(
            f"`max_length` ({max_length}) leaves no room for prompts after `max_completion_length` "
            f"({args.max_completion_length}); raise `max_length` or lower `max_completion_length`."
        )
    image_tokens = getattr(processor, "num_image_tokens", None)
    tokenizer = getattr(processor, "tokenizer", processor)
    image_token = getattr(processor, "image_token", None)
    prompts = prepare_grpo_dataset(dataset, args.format_instruction)  # unchanged if it already has `prompt`

    dropped: Counter = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    keep = []
    columns = set(dataset.column_names)
    for i in range(len(dataset)):
        row = prompts[i]
        reason = _drop_reason(row, columns, needs_gold)
        if reason is None and budget is not None:
            text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if image_tokens and image_token:  # each placeholder token becomes `num_image_tokens` tokens
                length += text.count(image_token) * (image_tokens - 1)
            elif image_token:  # dynamic resolution (Qwen2.5-VL): each placeholder becomes its image's grid
                length += sum(n - 1 for n in dynamic_image_tokens(processor, row.get("images") or []))
            if length > budget:
                reason = "prompt_too_long"
        if reason is None:
            keep.append(i)
            continue
        if strict:
            raise ValueError(f"GRPO sample {row.get('id', i)!r} is unusable: {reason}.")
        dropped[reason] += 1
        if len(examples[reason]) < _EXAMPLES_PER_REASON:
            examples[reason].append(str(row.get("id", i)))
    if dropped:
        logger.warning("GRPO dropped %d of %d samples: %s", sum(dropped.values()), len(dataset), dict(dropped))
    kept = dataset.select(keep)
    if "images" in kept.column_names:  # TRL's generation needs decoded images
        kept = as_image_list(kept, "images", decode=True)
    return kept, dict(dropped), dict(examples)


def dynamic_image_tokens(processor, images) -> list[int]:
    """Visual tokens of each image for a dynamic-resolution processor (Qwen2.5-VL): its patch grid after the
    `merge_size` x `merge_size` merge, at the processor's current `min_pixels`/`max_pixels`; [] for other processors.

    Qwen2.5-VL-3B at its default bounds: a 448x448 image is a 32x32 patch grid, 1024 / 4 = 256 tokens.
    """
    image_processor = getattr(processor, "image_processor", None)
    merge = getattr(image_processor, "merge_size", None)
    if not images or merge is None:
        return []
    grids = image_processor(images=[load_image(image) for image in images], return_tensors="pt")["image_grid_thw"]
    return [int(grid.prod()) // (merge * merge) for grid in grids]  # grids: (num_images, 3) = (t, h, w) patches


def _drop_reason(row, columns, needs_gold: bool) -> str | None:
    prompt = row["prompt"]
    has_user, placeholders = _user_turns_and_placeholders(prompt)
    if not has_user:
        return "no_user_turn"
    images = row.get("images") or []
    if placeholders != len(images):
        return "image_count_mismatch"
    for image in images:
        try:
            load_image(image)
        except ValueError:  # ImageLoadError: undecodable or truncated bytes
            return "bad_image"
    if "answer" in columns and not str(row.get("answer") or "").strip():
        return "empty_answer"
    if needs_gold:
        if "answer" not in columns:
            return "empty_answer"
        kind = row.get("kind") or "open"
        if kind not in SCORED_KINDS:
            return "not_verifiable"
        options = list(row.get("options") or []) or None
        try:
            if not score_answer(str(row["answer"]), str(row["answer"]), kind, options).correct:
                return "bad_gold_answer"
        except ValueError:
            return "bad_gold_answer"
    return None


def reward_curve(log_history: list[dict], window: int = 5) -> dict:
    """Mean reward (and each reward's mean) over consecutive windows of `window` logged steps."""
    entries = [e for e in log_history if "reward" in e]
    names = sorted({k[len("rewards/") : -len("/mean")] for e in entries for k in e if k.startswith("rewards/")
                    and k.endswith("/mean")})
    curve = []
    for start in range(0, len(entries), window):
        chunk = entries[start : start + window]
        point = {"steps": f"{chunk[0].get('step')}-{chunk[-1].get('step')}",
                 "reward": round(sum(e["reward"] for e in chunk) / len(chunk), 4)}
        for name in names:
            values = [e[f"rewards/{name}/mean"] for e in chunk if f"rewards/{name}/mean" in e]
            if values:
                point[name] = round(sum(values) / len(values), 4)
        curve.append(point)
    return {"window": window, "points": curve}


def _config_defaults(stage) -> dict:
    return {
        # The stage's count, also in the config: the trainer checks it against the model (set once, by the stage).
        "num_image_tokens": stage.num_image_tokens,
        # Every step: GRPO steps are few and each one's reward is the curve the summary reports.
        "logging_steps": 1,
    }


def _datasets(stage, recipe, processor, args):
    raw_train, mix_report = load_stage_datasets(stage.datasets, recipe.seed, stage.name, processor)
    train_dataset, dropped, dropped_examples = filter_grpo_samples(raw_train, processor, args, stage.max_length,
                                                                   args.strict_data)
    # GRPO needs question kinds with a verifiable `answer`; the reasons say which check emptied the data.
    require_samples(stage.name, len(raw_train), len(train_dataset), dropped)
    eval_dataset = None
    if stage.eval_datasets:
        raw_eval = load_stage_datasets(stage.eval_datasets, recipe.seed, stage.name, processor)[0]
        eval_dataset = filter_grpo_samples(raw_eval, processor, args, stage.max_length, args.strict_data)[0]
    summary = {"samples": len(train_dataset), "dropped": dropped, "dropped_examples": dropped_examples,
               "mixing": mix_report}
    return train_dataset, eval_dataset, summary


def _summarise(trainer, args) -> dict:
    history = trainer.state.log_history
    rewards = [e["reward"] for e in history if "reward" in e]
    kls = [e["kl"] for e in history if "kl" in e]
    return {
        "first_reward": rewards[0] if rewards else None,
        "final_reward": rewards[-1] if rewards else None,
        "reward_curve": reward_curve(history),
        "final_kl": kls[-1] if kls else None,
        "reward_funcs": list(args.reward_funcs),
        "reward_weights": list(args.reward_weights) if args.reward_weights is not None else None,
        "num_generations": args.num_generations,
        "beta": args.beta,
    }


GRPO_STAGE = StageType(config_class=InfiMedGRPOConfig, trainer_class=InfiMedGRPOTrainer,
                       config_defaults=_config_defaults, build_datasets=_datasets, summarise=_summarise)
