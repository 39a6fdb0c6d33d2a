"""The `grpo` recipe stage on the demo data: drops counted by reason, a saved checkpoint, a reward curve."""

import json
from collections import Counter

import pytest
import torch
import yaml

from infimed.data.demo import DemoDataConfig, build_demo_dataset
from infimed.training.grpo_stage import reward_curve
from infimed.training.recipe import load_recipe, run_recipe

# How each deliberate corruption of the demo data is caught before GRPO.
EXPECTED_REASON = {
    "bad_image_bytes": "bad_image",
    "truncated_image": "bad_image",
    "empty_answer": "empty_answer",
    "image_count_mismatch": "image_count_mismatch",
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "data"
    build_demo_dataset(DemoDataConfig(num_samples=96, num_eval=8, corrupted_per_reason=1)).save_to_disk(str(path))
    return path


def _recipe(tmp_path, demo_dir, **grpo):
    recipe = {
        "model": "tiny",
        "output_dir": str(tmp_path / "train"),
        "seed": 0,
        "stages": [{
            "name": "grpo",
            "type": "grpo",
            "datasets": [{"path": str(demo_dir), "split": "train"}],
            "num_image_tokens": 16,
            "trainable": ["llm"],
            "max_length": 512,
            "max_steps": 2,
            "learning_rate": 1e-4,
            "per_device_train_batch_size": 8,
            "num_generations": 4, "max_completion_length": 8, "gradient_checkpointing": False, "save_steps": 1,
            **grpo,
        }],
    }
    path = tmp_path / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return load_recipe(path)


def test_grpo_stage_runs_and_counts_drops(tmp_path, demo_dir):
    import datasets
    from transformers import AutoModelForImageTextToText

    summary = run_recipe(_recipe(tmp_path, demo_dir))
    stage = summary["stages"]["grpo"]
    assert stage["steps"] == 2 and stage["num_image_tokens"] == 16
    counts = stage["trainable_parameters"]
    assert counts.get("vision", 0) == 0 and counts.get("projector", 0) == 0
    assert stage["trainable_parameters"]["llm"] > 0

    train = datasets.load_from_disk(str(demo_dir))["train"]
    expected = Counter(EXPECTED_REASON[r] for r in train["corrupted"] if r)
    clean = [k for k, r in zip(train["kind"], train["corrupted"], strict=True) if not r]
    expected["not_verifiable"] = clean.count("caption")  # captions need a judge, not a string match
    assert stage["dropped"] == dict(expected)
    assert stage["samples"] + sum(expected.values()) == len(train)
    assert set(stage["dropped_examples"]) == set(expected)

    points = stage["reward_curve"]["points"]
    assert points and all({"reward", "format_reward", "accuracy_reward"} <= set(p) for p in points)
    saved = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "train" / "grpo"))
    assert saved.config.num_image_tokens == 16
    recipe_summary = json.loads((tmp_path / "train" / "recipe_summary.json").read_text())
    assert recipe_summary["stages"]["grpo"]["steps"] == 2


def test_grpo_stage_strict_raises_and_rejects_unknown_keys(tmp_path, demo_dir):
    with pytest.raises(ValueError, match="unusable"):
        run_recipe(_recipe(tmp_path, demo_dir, strict_data=True))
    with pytest.raises(ValueError, match="unknown `grpo` key"):
        run_recipe(_recipe(tmp_path / "b", demo_dir, num_generation=4))


def test_reward_curve_windows():
    history = [{"step": s, "reward": float(s), "rewards/format_reward/mean": 1.0} for s in range(1, 8)]
    history.append({"train_loss": 0.1})
    curve = reward_curve(history, window=3)
    assert [p["steps"] for p in curve["points"]] == ["1-3", "4-6", "7-7"]
    assert [p["reward"] for p in curve["points"]] == [2.0, 5.0, 7.0]
    assert all(p["format_reward"] == 1.0 for p in curve["points"])


def test_grpo_stage_resumes_from_its_last_checkpoint(tmp_path, demo_dir):
    recipe = _recipe(tmp_path, demo_dir)
    run_recipe(recipe)
    stage_dir = tmp_path / "train" / "grpo"
    assert (stage_dir / "checkpoint-2").is_dir()
    (stage_dir / "stage_summary.json").unlink()  # as if the run had been killed before the stage finished
    recipe.stages[0].trainer["max_steps"] = 3
    summary = run_recipe(recipe, resume=True)["stages"]["grpo"]
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["steps"] == 3
    # Steps 1-2 come back with the checkpoint's trainer state; only step 3 was trained in this run.
    assert [e["step"] for e in summary["log_history"] if "reward" in e] == [1, 2, 3]
    assert summary["first_reward"] is not None


def test_demo_rl_recipe_grpo_stage_is_valid(tmp_path, monkeypatch):
    from pathlib import Path

    from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
    from infimed.training.recipe import STAGE_TYPES
    from infimed.training.stages import trainer_config

    monkeypatch.setenv("INFIMED_DEMO_DATA", str(tmp_path))
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    assert all(stage.type == "sft" for stage in load_recipe(recipes / "demo.yaml").stages)  # Foundation: no RL
    recipe = load_recipe(recipes / "demo-rl.yaml")
    stage = recipe.stages[-1]
    assert stage.type == "grpo" and recipe.stages[-2].type == "sft"  # GRPO comes after the CoT-SFT stage
    assert recipe.model.endswith("train/sft-3")  # the chain starts from the Foundation model
    args = trainer_config(stage, recipe, STAGE_TYPES["grpo"], str(tmp_path / "grpo"))
    # GRPO keeps the SFT resolution: its checkpoint (and the evaluation) use the same visual-token count
    assert args.num_image_tokens == recipe.stages[-2].num_image_tokens
    assert args.beta > 0 and args.reward_funcs == ["format", "accuracy"]
    assert args.format_instruction == ANSWER_FORMAT_INSTRUCTION  # the words CoT rows and `eval --answer-format` use
