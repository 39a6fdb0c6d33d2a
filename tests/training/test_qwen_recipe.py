"""The InfiMed-SFT/RL-3B recipes: they load, start from Qwen2.5-VL-3B, carry the paper's sizes and rewards, and their
per-stage pixel bounds reach a Qwen2.5-VL image processor."""

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from infimed.core.composition import init_checkpoint
from infimed.core.config import ConfigError
from infimed.data.demo import DemoDataConfig, build_demo_dataset
from infimed.modeling.presets import PRESETS, count_parameters
from infimed.training.image_tokens import set_pixel_bounds
from infimed.training.recipe import load_recipe, recipe_from_dict, run_recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
QWEN_3B = "Qwen/Qwen2.5-VL-3B-Instruct"


@pytest.mark.parametrize("name, kind, total", [("infimed-sft-3b", "sft", 188_000), ("infimed-rl-3b", "grpo", 36_000)])
def test_shipped_3b_recipes_load_and_start_from_qwen(name, kind, total, monkeypatch):
    monkeypatch.delenv("INFIMED_SFT", raising=False)
    recipe = load_recipe(RECIPES / f"{name}.yaml")  # validates every stage and builds its trainer config
    assert recipe.model == QWEN_3B and recipe.model not in PRESETS  # a Hub id, not an InfiMed preset to initialise
    (stage,) = recipe.stages
    assert stage.type == kind
    assert sum(d.count for d in stage.datasets) == total  # the paper's sample counts
    assert stage.min_pixels is not None and stage.max_pixels is not None and stage.min_pixels < stage.max_pixels
    if kind == "sft":
        assert {d.name for d in stage.datasets} == {"textual-reasoning", "general-mm", "medical-mm", "general-cot",
                                                     "reflective-cot"}
    else:
        assert stage.trainer["reward_funcs"] == ["format", "accuracy"]


def test_rl_recipe_starts_from_the_sft_output_when_given(monkeypatch):
    monkeypatch.setenv("INFIMED_SFT", "runs/infimed-sft-3b/sft")
    assert load_recipe(RECIPES / "infimed-rl-3b.yaml").model == "runs/infimed-sft-3b/sft"


def test_every_invented_number_of_the_paper_recipes_is_marked():
    """Learning rates, epochs and batch sizes are not in the papers: each line that sets one says it is our choice."""
    keys = ("learning_rate:", "num_train_epochs:", "per_device_train_batch_size:", "gradient_accumulation_steps:",
            "num_generations:", "beta:", "loss_type:", "max_completion_length:", "min_pixels:", "max_pixels:")
    for path in ["infimed-sft-3b.yaml", "infimed-rl-3b.yaml", "infimed-foundation-1.7b.yaml",
                 "infimed-foundation-4b.yaml"]:
        lines = [line for line in (RECIPES / path).read_text().splitlines() if line.strip().startswith(keys)]
        assert lines, path
        assert not [line for line in lines if "OUR CHOICE" not in line], path


def test_pixel_bounds_are_validated():
    stage = {"name": "s", "type": "sft", "datasets": [{"path": "x"}], "min_pixels": 4096, "max_pixels": 1024}
    with pytest.raises(ConfigError, match="min_pixels"):
        recipe_from_dict({"model": "tiny", "stages": [stage]})


def test_pixel_bounds_set_the_visual_tokens_of_a_qwen_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    class Processor:  # only the image processor matters here
        image_processor = Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2,
                                                   min_pixels=256, max_pixels=128 * 128)

    image = Image.new("RGB", (128, 128))
    before = Processor.image_processor(images=[image])["image_grid_thw"].prod()
    assert set_pixel_bounds(Processor, None, 64 * 64, "test") == {"min_pixels": 256, "max_pixels": 64 * 64}
    after = Processor.image_processor(images=[image])["image_grid_thw"].prod()
    assert (before, after) == (256, 64)  # 16x16 patches -> 8x8: four times fewer visual tokens
    assert set_pixel_bounds(object(), 1, 2, "test") == {}  # fixed-size processors ignore the bounds (logged)


# --- The 3B recipes' shape on the tiny Qwen2.5-VL preset, on CPU ------------------------------------------------

TINY = "tiny-qwen2.5-vl"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "data"
    build_demo_dataset(DemoDataConfig(num_samples=48, num_eval=8, corrupted_per_reason=0)).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-qwen")
    init_checkpoint(TINY, str(folder), seed=0)
    return folder


def _shipped_stage(name, demo_dir, **overrides):
    """The shipped recipe's only stage, at test size: its keys and rewards as written, demo data, a few steps."""
    (stage,) = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())["stages"]
    stage.update(datasets=[{"path": str(demo_dir), "split": "train", "where": {"kind": ["yes_no", "multiple_choice"]}}],
                 min_pixels=32 * 32, max_pixels=64 * 64, max_steps=2, save_steps=100, logging_steps=1,
                 gradient_accumulation_steps=1, gradient_checkpointing=False, learning_rate=1e-3, **overrides)
    return stage


def test_tiny_qwen_preset_builds_offline_and_loads_with_auto_classes(tiny_qwen):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen)
    processor = AutoProcessor.from_pretrained(tiny_qwen)
    assert model.config.model_type == "qwen2_5_vl" and type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.image_token_id == model.config.image_token_id
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                                                                           "text": "q?"}]}],
                                         tokenize=False, add_generation_prompt=True)
    encoded = processor(text=[text], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    assert int((encoded["input_ids"] == processor.image_token_id).sum()) == 16  # 8x8 patches, 2x2 merge
    assert count_parameters(TINY)["total"] == sum(p.numel() for p in model.parameters())


def test_grpo_prompt_length_counts_the_real_qwen_image_tokens(tiny_qwen, demo_dir):
    import datasets
    from transformers import AutoProcessor

    from infimed.training.grpo_config import InfiMedGRPOConfig
    from infimed.training.grpo_stage import dynamic_image_tokens, filter_grpo_samples
    from infimed.training.grpo_trainer import prepare_grpo_dataset

    processor = AutoProcessor.from_pretrained(tiny_qwen)
    data = datasets.load_from_disk(str(demo_dir))["train"].filter(lambda k: k == "yes_no", input_columns="kind")
    data = data.select(range(4))
    (tokens,) = dynamic_image_tokens(processor, data[0]["images"])
    assert tokens == 16
    args = InfiMedGRPOConfig(output_dir="unused", max_completion_length=8, reward_funcs=["format", "accuracy"],
                             use_cpu=True, report_to=[])
    prompt = processor.apply_chat_template(prepare_grpo_dataset(data, args.format_instruction)[0]["prompt"],
                                           tokenize=False, add_generation_prompt=True)
    text_only = len(processor.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    real = text_only + tokens - 1
    # A budget between the one-token count and the real count drops the sample: the image is counted in full.
    kept, dropped, _ = filter_grpo_samples(data.select([0]), processor, args, real - 1 + 8)
    assert len(kept) == 0 and dropped == {"prompt_too_long": 1}
    kept, dropped, _ = filter_grpo_samples(data.select([0]), processor, args, real + 8)
    assert len(kept) == 1 and not dropped


def _saved_group(key: str) -> str:
    """Qwen2.5-VL checkpoints are saved in the original key layout (`visual.*`, `model.layers.*`, `lm_head.*`)."""
    return "projector" if key.startswith("visual.merger.") else "vision" if key.startswith("visual.") else "llm"


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_tiny_qwen_runs_the_3b_recipes_sft_then_grpo(tmp_path, demo_dir, lora):
    sft = _shipped_stage("infimed-sft-3b", demo_dir, max_length=512, per_device_train_batch_size=2)
    grpo = _shipped_stage("infimed-rl-3b", demo_dir, max_length=512, max_completion_length=8,
                          per_device_train_batch_size=4, num_generations=4, beta=0.01,
                          **({"lora": {"r": 4, "alpha": 8}} if lora else {}))
    recipe = recipe_from_dict({"model": TINY, "output_dir": str(tmp_path / "run"), "seed": 0, "stages": [sft, grpo]})
    summary = run_recipe(recipe)
    sft_out, grpo_out = summary["stages"]["sft"], summary["stages"]["grpo"]
    assert sft_out["steps"] == 2 and sft_out["samples"] > 0 and not sft_out["dropped"]
    assert grpo_out["steps"] == 2 and grpo_out["reward_funcs"] == ["format", "accuracy"]
    assert grpo_out["init_model"] == sft_out["output_dir"]  # GRPO starts where SFT ended
    assert (grpo_out["lora"] is not None) == lora

    from safetensors.torch import load_file
    from transformers import AutoProcessor

    init = load_file(str(tmp_path / "run" / "init" / "model.safetensors"))
    before = load_file(str(tmp_path / "run" / "sft" / "model.safetensors"))
    sft_changed = {_saved_group(n) for n in init if not torch.equal(init[n], before[n])}
    assert sft_changed == {"projector", "llm"}  # the recipe's `trainable`; the vision tower stays frozen
    after = load_file(str(tmp_path / "run" / "grpo" / "model.safetensors"))
    assert before.keys() == after.keys()  # LoRA merged: a plain Qwen2.5-VL checkpoint either way
    assert not any("lora" in n for n in after)
    # Frozen stays frozen. (An untrained policy earns no reward, so its advantages are 0 and GRPO moves nothing here;
    # tests/training/test_grpo_learning.py shows learning.)
    assert all(torch.equal(before[n], after[n]) for n in before if _saved_group(n) == "vision")
    assert grpo_out["first_reward"] is not None and len(grpo_out["reward_curve"]["points"]) >= 1
    processor = AutoProcessor.from_pretrained(tmp_path / "run" / "grpo")
    assert processor.image_processor.size["longest_edge"] == 64 * 64  # the stage's pixel bound, saved
