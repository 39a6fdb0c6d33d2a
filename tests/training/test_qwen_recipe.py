"""The InfiMed-SFT/RL-3B recipes: they load, start from Qwen2.5-VL-3B, carry the paper's sizes and rewards, and their
per-stage pixel bounds reach a Qwen2.5-VL image processor."""

from pathlib import Path

import pytest
from PIL import Image

from infimed.core.config import ConfigError
from infimed.modeling.presets import PRESETS
from infimed.training.image_tokens import set_pixel_bounds
from infimed.training.recipe import load_recipe, recipe_from_dict

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
