"""`--resume` after faults: a cut checkpoint is skipped, a finished stage is not trained past its budget, a full disk
names the folder; the whole-stage loss survives a resume. One uninterrupted run is the reference for every case."""

import json
import logging
import shutil

import datasets
import pytest
import torch
from safetensors.torch import load_file

from infimed.training.recipe import recipe_from_dict, run_recipe
from infimed.training.stages import CheckpointWriteError, last_checkpoint
from tests.training.test_sft import make_vqa_dataset

MAX_STEPS = 3


def _recipe(data_dir, output_dir):
    # A constant learning rate: one extra step changes the weights (cosine ends at 0, which would hide it).
    stage = dict(name="sft", type="sft", datasets=[{"path": data_dir, "split": "train"}], num_image_tokens=16,
                 max_length=256, max_steps=MAX_STEPS, learning_rate=5e-3, warmup_steps=0.0,
                 lr_scheduler_type="constant", per_device_train_batch_size=2, gradient_checkpointing=False,
                 logging_steps=1, save_steps=1, save_total_limit=2, report_to=[])
    return recipe_from_dict({"model": "tiny", "output_dir": str(output_dir), "seed": 3, "stages": [stage]})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its folder (with checkpoint-2 and checkpoint-3), weights and summary."""
    root = tmp_path_factory.mktemp("resume")
    data_dir = str(root / "data")
    datasets.DatasetDict({"train": make_vqa_dataset(12, seed=7)}).save_to_disk(data_dir)
    summary = run_recipe(_recipe(data_dir, root / "run"))
    return {"data": data_dir, "run": root / "run", "weights": load_file(str(root / "run" / "sft" / "model.safetensors")),
            "summary": summary["stages"]["sft"]}


def _copy(reference, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference["run"], run)
    (run / "sft" / "stage_summary.json").unlink()  # not summarised: --resume runs the stage again
    (run / "recipe_summary.json").unlink()
    return run


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CUTS = {
    "no trainer_state.json": lambda ckpt: (ckpt / "trainer_state.json").unlink(),
    "model.safetensors does not load": lambda ckpt: _truncate(ckpt / "model.safetensors"),
    "no optimizer state": lambda ckpt: (ckpt / "optimizer.pt").unlink(),
}


@pytest.mark.parametrize("reason", list(CUTS))
def test_a_cut_checkpoint_is_skipped_and_resume_matches_the_uninterrupted_run(reference, tmp_path, reason, caplog,
                                                                              one_thread):
    run = _copy(reference, tmp_path)
    stage_dir = run / "sft"
    CUTS[reason](stage_dir / f"checkpoint-{MAX_STEPS}")
    (stage_dir / "model.safetensors").unlink()  # killed during the last checkpoint's save: no stage output yet

    skipped = {}
    with caplog.at_level(logging.WARNING, logger="infimed.training.stages"):
        assert last_checkpoint(str(stage_dir), skipped) == str(stage_dir / f"checkpoint-{MAX_STEPS - 1}")
    assert list(skipped) == [str(stage_dir / f"checkpoint-{MAX_STEPS}")]
    assert reason in skipped[str(stage_dir / f"checkpoint-{MAX_STEPS}")] and reason in caplog.text

    summary = run_recipe(_recipe(reference["data"], run), resume=True)["stages"]["sft"]
    assert summary["resumed_from"] == str(stage_dir / f"checkpoint-{MAX_STEPS - 1}")
    assert summary["steps"] == MAX_STEPS
    assert _same_weights(load_file(str(stage_dir / "model.safetensors")), reference["weights"])
    # the loss of the whole stage, not only of the step after the resume
    assert summary["train_loss"] == pytest.approx(reference["summary"]["train_loss"], rel=1e-5)


def test_no_complete_checkpoint_means_none(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint name: ignored
    skipped = {}
    assert last_checkpoint(str(tmp_path), skipped) is None
    assert skipped == {str(tmp_path / "checkpoint-4"): "no trainer_state.json"}
    assert last_checkpoint(str(tmp_path / "missing")) is None


def test_a_failed_push_after_the_last_step_then_resume_does_not_train_again(reference, tmp_path, one_thread):
    run = tmp_path / "run"
    recipe = _recipe(reference["data"], run)

    def push_fails(spec, summary):
        raise ConnectionError("500 Server Error")

    with pytest.raises(ConnectionError):
        run_recipe(recipe, after_stage=push_fails)
    assert not (run / "sft" / "stage_summary.json").exists()

    pushed = []
    summary = run_recipe(recipe, resume=True, after_stage=lambda spec, s: pushed.append(s["steps"]) or {})
    stage = summary["stages"]["sft"]
    assert stage["steps"] == MAX_STEPS and pushed == [MAX_STEPS]  # not max_steps + 1
    assert _same_weights(load_file(str(run / "sft" / "model.safetensors")), reference["weights"])
    assert stage["train_loss"] == pytest.approx(reference["summary"]["train_loss"], rel=1e-5)
    saved = json.loads((run / "sft" / "stage_summary.json").read_text())
    assert saved["steps"] == MAX_STEPS


def test_a_full_disk_names_the_folder_and_its_free_space(reference, tmp_path, monkeypatch, one_thread):
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    with pytest.raises(CheckpointWriteError, match=r"Writing to .*sft failed .* GiB free there.*--resume"):
        run_recipe(_recipe(reference["data"], run))
