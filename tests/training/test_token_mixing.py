"""A stage's sources mixed by tokens: counted from text and image count alone, reported per source, never silent."""

import datasets
import pytest
import yaml

from infimed.core.config import ConfigError
from infimed.data.demo import DemoDataConfig, build_demo_dataset
from infimed.testing import tiny_processor
from infimed.training.recipe import DatasetSpec, load_recipe, recipe_from_dict
from infimed.training.sft_stage import SFT_STAGE
from infimed.training.samples import SampleEncoder
from infimed.training.stages import load_stage_datasets, sample_token_lengths

NUM_IMAGE_TOKENS = 16


@pytest.fixture(scope="module")
def processor():
    return tiny_processor(num_image_tokens=NUM_IMAGE_TOKENS)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "data"
    build_demo_dataset(DemoDataConfig(num_samples=400, num_eval=8, corrupted_per_reason=0)).save_to_disk(str(path))
    return str(path)


def test_lengths_without_decoding_equal_the_encoded_lengths(processor, demo_dir):
    train = datasets.load_from_disk(demo_dir)["train"].select(range(40))
    encoder = SampleEncoder(processor=processor, max_length=10_000, image_token_id=processor.image_token_id)
    assert sample_token_lengths(train, processor, NUM_IMAGE_TOKENS) == [encoder(row)["length"] for row in train]


def test_stage_mixes_by_token_share_and_reports_rows_and_tokens(processor, demo_dir):
    specs = [DatasetSpec(path=demo_dir, where={"kind": ["caption"]}, token_weight=1, name="captions"),
             DatasetSpec(path=demo_dir, where={"kind": ["yes_no", "multiple_choice"]}, token_weight=3, name="closed")]
    mixed, report = load_stage_datasets(specs, seed=0, stage_name="pretrain", processor=processor)
    closed, captions = report["sources"]["closed"], report["sources"]["captions"]
    assert abs(closed["token_share"] - 0.75) < 0.01 and abs(captions["token_share"] - 0.25) < 0.01
    assert closed["taken"] + captions["taken"] == len(mixed) and report["visual_tokens_per_image"] == NUM_IMAGE_TOKENS
    # one of the two is the limiting source, taken whole; the other's left-out rows are counted
    assert 0 in (closed["unused"], captions["unused"]) and closed["unused"] + captions["unused"] > 0
    lengths = dict(zip(mixed["id"], sample_token_lengths(mixed, processor, NUM_IMAGE_TOKENS)))
    assert sum(lengths.values()) == report["total_tokens"]


def test_unmeetable_stage_mix_names_the_source_unless_allowed(processor, demo_dir):
    spec = dict(path=demo_dir, where={"kind": ["caption"]}, name="captions", tokens=10_000_000)
    with pytest.raises(ConfigError, match="Stage 'pretrain': Mix source 'captions'.*allow_repeat"):
        load_stage_datasets([DatasetSpec(**spec)], seed=0, stage_name="pretrain", processor=processor)
    with pytest.warns(UserWarning, match="allow_shortfall"):
        _, report = load_stage_datasets([DatasetSpec(**spec, allow_shortfall=True)], seed=0, processor=processor)
    captions = report["sources"]["captions"]
    assert captions["unused"] == 0 and captions["shortfall_tokens"] == 10_000_000 - captions["taken_tokens"] > 0
    with pytest.raises(ConfigError, match="processor"):
        load_stage_datasets([DatasetSpec(**spec)], seed=0, stage_name="pretrain")


def test_recipe_keys_for_token_mixing_are_checked(tmp_path, demo_dir):
    stage = {"name": "pretrain", "max_length": 512,
             "datasets": [{"path": demo_dir, "token_weight": 5, "tokens": 100}]}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"model": "tiny", "output_dir": str(tmp_path / "out"), "stages": [stage]}))
    with pytest.raises(ConfigError, match="`token_weight` and `tokens`"):
        load_recipe(path)
    stage["datasets"] = [{"path": demo_dir, "tokens": 100, "allow_repeat": True}]
    path.write_text(yaml.safe_dump({"model": "tiny", "output_dir": str(tmp_path / "out"), "stages": [stage]}))
    assert load_recipe(path).stages[0].datasets[0].allow_repeat


def test_sft_stage_summary_has_rows_and_tokens_per_source(tmp_path, processor, demo_dir):
    stage = {"name": "pretrain", "max_length": 512, "num_image_tokens": NUM_IMAGE_TOKENS,
             "datasets": [{"path": demo_dir, "where": {"kind": ["caption"]}, "name": "captions", "tokens": 5000}]}
    recipe = recipe_from_dict({"model": "tiny", "output_dir": str(tmp_path), "stages": [stage]})
    train, _, summary = SFT_STAGE.build_datasets(recipe.stages[0], recipe, processor, None)
    captions = summary["mixing"]["sources"]["captions"]
    assert captions["requested_tokens"] == 5000 and captions["taken"] == len(train)
    assert abs(captions["taken_tokens"] - 5000) < max(sample_token_lengths(train, processor, NUM_IMAGE_TOKENS))
