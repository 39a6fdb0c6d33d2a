"""A tiny GRPO run on the demo data whose mean reward rises, with the reference model left untouched.

What is learned, honestly: a randomly initialised tiny model never writes `<think>...</think><answer>...</answer>`
by chance, so the run starts from a brief SFT warm start (50 steps on the demo's yes/no questions, the gold answer
wrapped in the tags), stopped early: the model then completes the layout in about half of its samples at
temperature 1. GRPO is trained on the format reward and must make the layout reliable; the yes/no accuracy reward
is computed with weight 0, only to be logged (on this budget it stays near chance: image-conditioned answers need
far more than a few dozen RL steps of a 1M-parameter model). Run with `pytest -s` to see the curve.
"""

import random

import pytest
import torch

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
from infimed.data.demo import DemoDataConfig, build_demo_dataset
from infimed.testing import tiny_model, tiny_processor
from infimed.training.grpo_config import InfiMedGRPOConfig
from infimed.training.grpo_stage import reward_curve
from infimed.training.grpo_trainer import InfiMedGRPOTrainer, prepare_grpo_dataset

NUM_IMAGE_TOKENS = 16  # 4x4 pooled grid: the pretraining resolution of the tiny preset, the cheapest on CPU
WARM_START_STEPS = 50  # measured: the layout is complete in ~40-60% of samples after 50 steps of 4 samples
GRPO_STEPS = 30


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def _warm_start(model, processor, prompts, steps, seed=0):
    """Plain teacher-forced SFT on `<think></think><answer>{gold}</answer>`, loss on the answer tokens only."""
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        for _ in range(4):
            row = prompts[rng.randrange(len(prompts))]
            prompt = processor.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            target = f"<think></think><answer>{row['answer']}</answer>{processor.tokenizer.eos_token}"
            full = processor(text=[prompt + target], images=[row["images"]], return_tensors="pt")
            prompt_len = processor(text=[prompt], images=[row["images"]], return_tensors="pt")["input_ids"].shape[1]
            labels = full["input_ids"].clone()
            labels[:, :prompt_len] = -100
            (model(**full, labels=labels, num_image_tokens=NUM_IMAGE_TOKENS).loss / 4).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


@pytest.mark.slow
def test_grpo_mean_reward_rises_on_demo_data(tmp_path):
    torch.manual_seed(0)
    demo = build_demo_dataset(DemoDataConfig(num_samples=200, num_eval=8, corrupted_per_reason=0))
    train = demo["train"].filter(lambda kind: kind == "yes_no", input_columns=["kind"])
    model, processor = tiny_model(), tiny_processor(num_image_tokens=NUM_IMAGE_TOKENS)
    _warm_start(model, processor, prepare_grpo_dataset(train, ANSWER_FORMAT_INSTRUCTION), WARM_START_STEPS)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}

    args = InfiMedGRPOConfig(
        output_dir=str(tmp_path), reward_funcs=["format", "accuracy"], reward_weights=[1.0, 0.0],
        num_generations=4, per_device_train_batch_size=16, max_completion_length=20, max_steps=GRPO_STEPS,
        # 1e-3 after a 6-step warm-up: measured over seeds, a smooth rise of +0.25-0.30 in mean reward; without the
        # warm-up the first updates break the half-learned layout (reward dips to ~0.1) before it recovers.
        learning_rate=1e-3, warmup_steps=0.2, beta=0.04, num_image_tokens=NUM_IMAGE_TOKENS, logging_steps=1, report_to="none",
        save_strategy="no", use_cpu=True, bf16=False, gradient_checkpointing=False, disable_tqdm=True, seed=1,
    )
    trainer = InfiMedGRPOTrainer(model, args=args, train_dataset=train, processing_class=processor)
    trainer.train()

    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    curve = reward_curve(trainer.state.log_history, window=5)["points"]
    print("\nGRPO reward curve (mean per 5 steps):", curve)
    assert len(rewards) == GRPO_STEPS
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    assert last > first + 0.1, f"mean reward did not rise: first 10 steps {first:.3f}, last 10 steps {last:.3f}"

    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), start[n])]
    assert any(n.startswith("model.language_model.") for n in changed)
    assert all(torch.equal(p.detach(), start[n]) for n, p in trainer.ref_model.named_parameters())
