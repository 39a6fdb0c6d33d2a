"""The `grpo` stage of a recipe: GRPO with verifiable rewards (`InfiMedGRPOTrainer`) after the SFT stages.

Called by `infimed.training.recipe` as `run(stage, recipe, init_model, output_dir, resume) -> dict`. A stage:

    - name: grpo
      type: grpo
      datasets: [{path: demo-output/data, split: train, where: {kind: [yes_no, multiple_choice]}, count: 64}]
      num_image_tokens: 64
      trainable: [projector, llm]
      max_length: 1024              # prompt + completion tokens; longer prompts are dropped (never cut)
      max_steps: 20
      learning_rate: 5.0e-5
      per_device_train_batch_size: 8
      grpo: {num_generations: 4, max_completion_length: 32, reward_funcs: [format, accuracy],
             reward_weights: [0.5, 1.0]}

Samples that cannot be rewarded or generated from are dropped before training and counted by reason in the summary
(`bad_image`, `image_count_mismatch`, `empty_answer`, `not_verifiable`, `bad_gold_answer`, `prompt_too_long`, and
`no_user_turn`), with a few example ids per reason.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter, defaultdict

__all__ = ["build_grpo_config", "filter_grpo_samples", "reward_curve", "run"]

logger = logging.getLogger(__name__)

# Checkpoints kept per stage: the latest for --resume plus one spare in case the latest is cut mid-write.
_SAVE_TOTAL_LIMIT = 2
# Example ids kept per drop reason in the summary: enough to find the culprits, small enough for a JSON summary.
_EXAMPLES_PER_REASON = 3


def build_grpo_config(stage, recipe, output_dir: str):
    """`InfiMedGRPOConfig` from the stage's common keys and its `grpo:` block (which wins on conflicts)."""
    from .grpo_config import InfiMedGRPOConfig
    from .stages import stage_trainer_config

    return stage_trainer_config(
        InfiMedGRPOConfig, stage, recipe, output_dir, stage.grpo, "grpo",
        num_image_tokens=stage.num_image_tokens, save_total_limit=_SAVE_TOTAL_LIMIT,
        # Every step: GRPO steps are few and each one's reward is the curve the summary reports.
        logging_steps=1,
    )


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
    leaves room for `max_completion_length` within `max_length`.
    """
    import datasets

    from infimed.core.answers import score_answer
    from infimed.core.tasks import SCORED_KINDS
    from infimed.processing.image_io import load_image

    from .grpo_trainer import prepare_grpo_dataset

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
        reason = _drop_reason(row, columns, needs_gold, SCORED_KINDS, score_answer, load_image)
        if reason is None and budget is not None:
            text = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if image_tokens and image_token:  # each placeholder token becomes `num_image_tokens` tokens
                length += text.count(image_token) * (image_tokens - 1)
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
        kept = kept.cast_column("images", datasets.List(datasets.Image()))
    return kept, dict(dropped), dict(examples)


def _drop_reason(row, columns, needs_gold, scored_kinds, score_answer, load_image) -> str | None:
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
        if kind not in scored_kinds:
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


def run(stage, recipe, init_model: str, output_dir: str, resume: bool) -> dict:
    """Train one GRPO stage from `init_model`; write a full checkpoint to `output_dir`; return its summary."""
    from transformers import set_seed

    from .grpo_trainer import InfiMedGRPOTrainer
    from .stages import (
        last_checkpoint as _last_checkpoint,
        load_stage_datasets,
        load_stage_model,
        lora_config,
        push_stage_output,
        save_stage_output,
    )

    start = time.time()
    set_seed(recipe.seed)
    model, processor, trainable = load_stage_model(init_model, stage, recipe)
    args = build_grpo_config(stage, recipe, output_dir)
    strict = args.strict_data
    raw_train, mix_report = load_stage_datasets(stage.datasets, recipe.seed)
    train_dataset, dropped, dropped_examples = filter_grpo_samples(raw_train, processor, args, stage.max_length, strict)
    if len(train_dataset) == 0:
        raise ValueError(
            f"Stage {stage.name!r}: no usable GRPO sample left ({dropped}); check the `datasets` selection "
            "(GRPO needs question kinds with a verifiable `answer`)."
        )
    eval_dataset = None
    if stage.eval_datasets:
        raw_eval = load_stage_datasets(stage.eval_datasets, recipe.seed)[0]
        eval_dataset = filter_grpo_samples(raw_eval, processor, args, stage.max_length, strict)[0]
    peft_config = lora_config(stage.lora, stage.trainable) if stage.lora is not None else None
    trainer = InfiMedGRPOTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                                 processing_class=processor, peft_config=peft_config)
    checkpoint = _last_checkpoint(output_dir) if resume else None
    if checkpoint:
        logger.info("Stage %s resumes from %s", stage.name, checkpoint)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    save_stage_output(trainer.model, processor, output_dir)

    history = trainer.state.log_history
    rewards = [e["reward"] for e in history if "reward" in e]
    kls = [e["kl"] for e in history if "kl" in e]
    summary = {
        "steps": trainer.state.global_step,
        "seconds": round(time.time() - start, 2),
        "train_loss": result.training_loss,
        "first_reward": rewards[0] if rewards else None,
        "final_reward": rewards[-1] if rewards else None,
        "reward_curve": reward_curve(history),
        "final_kl": kls[-1] if kls else None,
        "reward_funcs": list(args.reward_funcs),
        "reward_weights": list(args.reward_weights) if args.reward_weights is not None else None,
        "num_generations": args.num_generations,
        "beta": args.beta,
        "num_image_tokens": trainer.num_image_tokens,
        "trainable": stage.trainable,
        "trainable_parameters": trainable,
        "lora": dataclasses.asdict(stage.lora) if stage.lora is not None else None,
        "samples": len(train_dataset),
        "dropped": dropped,
        "dropped_examples": dropped_examples,
        "mixing": mix_report,
        "resumed_from": checkpoint,
        "log_history": history,
    }
    if stage.push_to_hub:
        summary["pushed_to"] = push_stage_output(output_dir, stage.push_to_hub)
    return summary
