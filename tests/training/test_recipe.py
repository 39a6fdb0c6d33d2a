"""Recipe runner: YAML validation, stage chaining, trainable modules, per-stage visual tokens, LoRA, resume."""

import json

import datasets
import pytest
import torch
import yaml
from safetensors.torch import load_file

from infimed.core.config import ConfigError
from infimed.core.parameter_groups import module_group
from infimed.training.modules import set_trainable
from infimed.training.recipe import load_recipe, recipe_from_dict, run_recipe
from tests.training.test_sft import make_vqa_dataset


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _changed(before, after, group):
    names = [n for n in before if module_group(n) == group]
    assert names, group
    return any(not torch.equal(before[n], after[n]) for n in names)


def _stage(name, **kw):
    stage = dict(name=name, type="sft", datasets=[{"path": "DATA", "split": "train"}], num_image_tokens=16,
                 max_length=256, max_steps=2, learning_rate=5e-3, warmup_steps=0.0, per_device_train_batch_size=2,
                 gradient_checkpointing=False, logging_steps=1, save_steps=1, report_to=[])
    stage.update(kw)
    return stage


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo"
    datasets.DatasetDict({"train": make_vqa_dataset(12, seed=7, corrupt=True)}).save_to_disk(str(path))
    return str(path)


def _recipe(tmp_path, data_dir, stages):
    for stage in stages:
        for d in stage["datasets"]:
            d["path"] = data_dir
    text = yaml.safe_dump({"model": "tiny", "output_dir": str(tmp_path / "run"), "seed": 3, "stages": stages})
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_recipe(path)


def test_validation_errors_name_the_problem(monkeypatch):
    base = {"model": "tiny", "stages": [_stage("a")]}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]"):
        recipe_from_dict({**base, "stages": [_stage("a", epoch=1)]})
    with pytest.raises(ValueError, match="trainable"):
        recipe_from_dict({**base, "stages": [_stage("a", trainable=["decoder"])]})
    with pytest.raises(ValueError, match="unique"):
        recipe_from_dict({**base, "stages": [_stage("a"), _stage("a")]})
    with pytest.raises(ValueError, match="ORG/NAME"):
        recipe_from_dict({**base, "stages": [_stage("a", push_to_hub="no-slash")]})
    with pytest.raises(ValueError, match="unknown type"):
        recipe_from_dict({**base, "stages": [_stage("a", type="dpo")]})
    monkeypatch.setenv("MY_DATA", "/data/here")
    recipe = recipe_from_dict({**base, "stages": [_stage("a", datasets=[{"path": "${MY_DATA}/x"},
                                                                          {"path": "${UNSET_VAR_X:-fallback}"}])]})
    assert [d.path for d in recipe.stages[0].datasets] == ["/data/here/x", "fallback"]


def test_every_stage_is_checked_at_load_with_typed_errors():
    base = {"model": "tiny", "stages": [_stage("a")]}
    with pytest.raises(ConfigError, match=r"stage 'a'\.max_steps: expected int, got '3' \(str\)"):
        recipe_from_dict({**base, "stages": [_stage("a", max_steps="3")]})
    with pytest.raises(ConfigError, match=r"recipe\.stages: expected a YAML list"):
        recipe_from_dict({**base, "stages": {"a": _stage("a")}})
    grpo = _stage("b", type="grpo", num_generation=4)
    with pytest.raises(ConfigError, match=r"stage 'b': unknown key\(s\) \['num_generation'\].*num_generations"):
        recipe_from_dict({**base, "stages": [_stage("a"), grpo]})  # a later stage fails before anything runs
    with pytest.raises(ConfigError, match=r"stage 'a'\.lora\.r: expected int"):
        recipe_from_dict({**base, "stages": [_stage("a", lora={"r": 4.5})]})


def test_shipped_recipes_parse():
    for name in ("demo", "infimed-foundation-1.7b", "infimed-foundation-4b"):
        recipe = load_recipe(f"recipes/{name}.yaml")
        assert [s.num_image_tokens for s in recipe.stages][0] < recipe.stages[-1].num_image_tokens
        assert all("vision" not in s.trainable for s in recipe.stages)


def test_set_trainable_groups_on_qwen2_5_vl_layout():
    from tests.training.test_packing_qwen import build_tiny_qwen

    model = build_tiny_qwen()[0]
    counts = set_trainable(model, ["projector"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.visual.merger.") for n in trainable)
    assert counts["projector"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="Unknown trainable group"):
        set_trainable(model, ["text"])


def test_stages_chain_train_named_modules_and_save_their_visual_tokens(tmp_path, data_dir):
    recipe = _recipe(tmp_path, data_dir, [
        _stage("align", trainable=["projector"]),
        _stage("sft", trainable=["projector", "llm"], num_image_tokens=64, max_length=512),
    ])
    summary = run_recipe(recipe)
    run = tmp_path / "run"
    init, align, sft = _weights(run / "init"), _weights(run / "align"), _weights(run / "sft")
    assert _changed(init, align, "projector")
    assert not _changed(init, align, "llm") and not _changed(init, align, "vision")
    assert _changed(align, sft, "projector") and _changed(align, sft, "llm")
    assert not _changed(align, sft, "vision")

    assert json.loads((run / "align" / "config.json").read_text())["num_image_tokens"] == 16
    assert json.loads((run / "sft" / "config.json").read_text())["num_image_tokens"] == 64
    processor_files = (run / "sft" / "processor_config.json").read_text()
    assert '"num_image_tokens": 64' in processor_files

    stages = json.loads((run / "recipe_summary.json").read_text())["stages"]
    assert list(stages) == ["align", "sft"] and stages["sft"]["init_model"] == str(run / "align")
    for stage in stages.values():
        assert stage["steps"] == 2 and stage["packing_efficiency"] > 0
        assert stage["dropped"] == {"empty_assistant": 1, "image_mismatch": 1, "too_long": 1}
        # s0's corrupt image is not decoded before training; the collator skips it each time a trained row holds it
        assert stage["skipped_in_training"]["examples"] in ({}, {"bad_image": ["s0"]})
    assert summary["stages"]["sft"]["trainable_parameters"].keys() == {"projector", "llm"}

    # --resume: finished stages are skipped, their outputs untouched
    mtime = (run / "sft" / "model.safetensors").stat().st_mtime
    again = run_recipe(recipe, resume=True)
    assert (run / "sft" / "model.safetensors").stat().st_mtime == mtime
    assert again["stages"]["sft"]["steps"] == 2


def test_lora_stage_saves_a_merged_full_checkpoint(tmp_path, data_dir):
    recipe = _recipe(tmp_path, data_dir, [_stage("lora", trainable=["llm"], lora={"r": 4, "alpha": 8})])
    run_recipe(recipe)
    run = tmp_path / "run"
    init, lora = _weights(run / "init"), _weights(run / "lora")
    assert lora.keys() == init.keys()  # merged: no adapter tensors, same layout as the base model
    assert _changed(init, lora, "llm") and not _changed(init, lora, "vision")
    assert not _changed(init, lora, "projector")


def test_single_stage_needs_the_previous_output(tmp_path, data_dir):
    recipe = _recipe(tmp_path, data_dir, [_stage("a"), _stage("b")])
    with pytest.raises(ValueError, match="does not exist yet"):
        run_recipe(recipe, stage="b")
    with pytest.raises(ValueError, match="No stage named"):
        run_recipe(recipe, stage="c")
