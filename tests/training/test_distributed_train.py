"""`infimed train` of a two-stage recipe under a 2-process CPU launch (gloo): DDP with torchrun, FSDP2 with accelerate.

Each launch runs this file as the worker: it records every write of model weights, processors and summaries (by
rank and folder) and then runs `infimed train`. The test checks one writer per stage output, that the final
checkpoint gives the logits of a 1-process run at the same global batch (2 rows per step: 1 process x 2 rows or
2 processes x 1 row), and that both runs logged the same loss curve. SGD, so the curves compare the averaged
gradients directly.

    torchrun --nproc_per_node 2 tests/training/test_distributed_train.py RECIPE.yaml LOG_DIR
"""

import json
import os
import socket
import subprocess
import sys
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from infimed.core.config import ConfigError
from infimed.testing import tiny_processor
from infimed.training.distributed import require_fsdp_when_asked
from infimed.training.recipe import recipe_from_dict, run_recipe
from infimed.training.stages import checkpoint_problem
from tests.training.test_sft import make_vqa_dataset

STAGES = ("pretrain", "sft")
ROOT = Path(__file__).resolve().parents[2]
# accelerate's multi-process launcher (torchrun underneath) is its MULTI_GPU type; on a machine without GPUs the
# processes run on CPU with gloo (`accelerate launch --cpu` starts one process). accelerate has no FSDP on CPU: its
# state turns to FSDP only from a GPU-like multi-device type, so on CPU (MULTI_CPU) the FSDP config, the recipe's
# `fsdp`/`fsdp_config` and ACCELERATE_USE_FSDP are all dropped and the model is wrapped in DDP (torch's own
# `fully_shard` does run on CPU with gloo). The FSDP2 test therefore needs two GPUs.
ACCELERATE_CPU = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
                  "num_processes": 2, "machine_rank": 0, "mixed_precision": "no", "use_cpu": False}
FSDP2 = {
    "compute_environment": "LOCAL_MACHINE", "distributed_type": "FSDP", "num_machines": 1, "num_processes": 2,
    "machine_rank": 0, "mixed_precision": "no", "use_cpu": False,
    "fsdp_config": {
        "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "fsdp_transformer_layer_cls_to_wrap": "Qwen3DecoderLayer,SiglipEncoderLayer",
        # sharded on purpose: the stage output must still be one full checkpoint the next stage loads
        "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_reshard_after_forward": True,
        "fsdp_cpu_ram_efficient_loading": False, "fsdp_offload_params": False,
    },
}


def _recipe(data_dir: str, output_dir: str, rows_per_device: int, use_cpu: bool = True) -> dict:
    def stage(name, tokens):
        return dict(name=name, type="sft", datasets=[{"path": data_dir, "split": "train"}], num_image_tokens=tokens,
                    max_length=160, max_steps=2, learning_rate=0.3, optim="sgd", lr_scheduler_type="constant",
                    warmup_steps=0.0, per_device_train_batch_size=rows_per_device, gradient_checkpointing=False,
                    logging_steps=1, save_steps=1, report_to=[], use_cpu=use_cpu, bf16=False,
                    ddp_find_unused_parameters=True)

    return {"model": "tiny", "output_dir": output_dir, "seed": 5, "stages": [stage(STAGES[0], 16), stage(STAGES[1], 16)]}


def _worker(recipe_path: str, log_dir: str, *flags: str) -> int:
    """Run `infimed train` with every weights, processor and text write recorded in LOG_DIR/writes<rank>.jsonl."""
    import transformers.modeling_utils as modeling_utils
    from accelerate.state import AcceleratorState
    from transformers import ProcessorMixin

    from infimed.cli import main

    rank = int(os.environ.get("RANK", "0"))
    log = open(os.path.join(log_dir, f"writes{rank}.jsonl"), "a")

    def record(kind, path):
        log.write(json.dumps({"rank": rank, "kind": kind, "path": os.path.abspath(str(path))}) + "\n")
        log.flush()

    save_file, save_processor, write_text = modeling_utils.safe_save_file, ProcessorMixin.save_pretrained, Path.write_text

    def weights(state_dict, filename, *args, **kwargs):
        record("weights", os.path.dirname(filename))
        return save_file(state_dict, filename, *args, **kwargs)

    def processor(self, save_directory, *args, **kwargs):
        record("processor", save_directory)
        return save_processor(self, save_directory, *args, **kwargs)

    def text(self, *args, **kwargs):
        record("text", self)
        return write_text(self, *args, **kwargs)

    modeling_utils.safe_save_file, ProcessorMixin.save_pretrained, Path.write_text = weights, processor, text
    code = main(["train", recipe_path, *flags])
    try:  # what the trainer ran under (no trainer, no state: a `--resume` of finished stages)
        log.write(json.dumps({"rank": rank, "kind": "launch", "type": AcceleratorState().distributed_type.value}) + "\n")
    except ValueError:
        pass
    log.close()
    return code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(launcher: list[str], recipe_path: Path, log_dir: Path, *flags: str) -> list[dict]:
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", *launcher, __file__, str(recipe_path), str(log_dir), *flags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    return [json.loads(line) for f in sorted(log_dir.glob("writes*.jsonl")) for line in f.read_text().splitlines()]


def _torchrun():
    return ["torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
            str(_free_port())]


def _accelerate(config: Path):
    return ["accelerate.commands.launch", "--config_file", str(config), "--main_process_port", str(_free_port())]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same recipe in this process, 2 rows per step."""
    root = tmp_path_factory.mktemp("one")
    data_dir = str(root / "data")
    datasets.DatasetDict({"train": make_vqa_dataset(16, seed=9)}).save_to_disk(data_dir)
    summary = run_recipe(recipe_from_dict(_recipe(data_dir, str(root / "run"), rows_per_device=2)))
    return data_dir, root / "run", summary


def _losses(stage_summary: dict) -> list[float]:
    return [e["loss"] for e in stage_summary["log_history"] if "loss" in e]


def _logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(folder), trust_remote_code=True, dtype=torch.float32)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    sample = tiny_processor(num_image_tokens=16)(text="<image>\nIs there a nodule?", images=[Image.fromarray(pixels)],
                                                 return_tensors="pt")
    with torch.no_grad():
        return model(**sample).logits


def _check_two_processes(tmp_path, one_process, launcher, tol, distributed_type, use_cpu=True):
    data_dir, one_run, one_summary = one_process
    run = tmp_path / "run"
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(_recipe(data_dir, str(run), rows_per_device=1, use_cpu=use_cpu)))
    writes = _launch(launcher, recipe_path, tmp_path / "log")
    assert sorted((w["rank"], w["type"]) for w in writes if w["kind"] == "launch") == [
        (0, distributed_type), (1, distributed_type)]

    # exactly one process wrote each handed-over folder (init, each stage) and each summary
    for folder in ["init", *STAGES]:
        for kind in ("weights", "processor"):
            writers = [w["rank"] for w in writes if w["kind"] == kind and w["path"] == str(run / folder)]
            assert writers == [0], (folder, kind, writers)
    for name in ["recipe_summary.json", *(f"{s}/stage_summary.json" for s in STAGES)]:
        writers = {w["rank"] for w in writes if w["kind"] == "text" and w["path"] == str(run / name)}
        assert writers == {0}, (name, writers)

    summary = json.loads((run / "recipe_summary.json").read_text())
    for stage in STAGES:
        two, one = _losses(summary["stages"][stage]), _losses(one_summary["stages"][stage])
        assert len(two) == len(one) == 2
        assert max(abs(a - b) for a, b in zip(one, two)) < tol, (stage, one, two)
    torch.testing.assert_close(_logits(run / STAGES[-1]), _logits(one_run / STAGES[-1]), atol=tol, rtol=0)
    return run, recipe_path


def test_ddp_torchrun_writes_once_and_matches_one_process(tmp_path, one_process):
    run, recipe_path = _check_two_processes(tmp_path, one_process, _torchrun(), tol=1e-4, distributed_type="MULTI_CPU")
    # --resume under the launcher, after a cut in the last stage's final save: the finished stage is skipped, the cut
    # one is saved again from its last checkpoint (not trained past its budget), by one process
    (run / "sft" / "stage_summary.json").unlink()
    (run / "sft" / "model.safetensors").unlink()
    before = (run / "pretrain" / "model.safetensors").stat().st_mtime_ns
    writes = _launch(_torchrun(), recipe_path, tmp_path / "resume-log", "--resume")
    assert not [w for w in writes if w.get("path") == str(run / "pretrain") and w["kind"] != "text"]
    assert before == (run / "pretrain" / "model.safetensors").stat().st_mtime_ns
    assert [w["rank"] for w in writes if w["kind"] == "weights" and w["path"] == str(run / "sft")] == [0]
    assert json.loads((run / "sft" / "stage_summary.json").read_text())["steps"] == 2
    torch.testing.assert_close(_logits(run / "sft"), _logits(one_process[1] / "sft"), atol=1e-4, rtol=0)


def test_accelerate_launch_writes_once_and_matches_one_process(tmp_path, one_process):
    config = tmp_path / "accelerate.yaml"
    config.write_text(yaml.safe_dump(ACCELERATE_CPU))
    _check_two_processes(tmp_path, one_process, _accelerate(config), tol=1e-4, distributed_type="MULTI_CPU")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="FSDP2 under accelerate needs two GPUs (none on CPU)")
def test_fsdp2_writes_full_checkpoints_once_and_matches_one_process(tmp_path, one_process):
    config = tmp_path / "fsdp2.yaml"
    config.write_text(yaml.safe_dump(FSDP2))
    _check_two_processes(tmp_path, one_process, _accelerate(config), tol=1e-3, distributed_type="FSDP",
                         use_cpu=False)


@pytest.mark.parametrize("layout, complete", [
    ({"pytorch_model_fsdp_0/.metadata", "optimizer_0/.metadata", "scheduler.pt"}, True),
    ({"pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/.metadata", "scheduler.pt"}, False),  # cut mid-save
    ({"global_step4/mp_rank_00_model_states.pt", "latest", "scheduler.pt"}, True),  # DeepSpeed
    ({"global_step4/mp_rank_00_model_states.pt", "scheduler.pt"}, False),
])
def test_resume_knows_fsdp_and_deepspeed_checkpoints(tmp_path, layout, complete):
    """--resume under FSDP or ZeRO-3: their checkpoints hold no model.safetensors/optimizer.pt, and a complete one
    must not be taken for a cut one (which `--resume` removes)."""
    (tmp_path / "trainer_state.json").write_text("{}")
    for name in layout:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert (checkpoint_problem(str(tmp_path)) is None) == complete


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:]))


@pytest.mark.parametrize("env, fsdp, enabled, raises", [
    ({"ACCELERATE_USE_FSDP": "true"}, [], False, True),   # an FSDP accelerate config launched on CPU
    ({}, ["full_shard"], False, True),                     # the stage's `fsdp` key, on CPU
    ({"ACCELERATE_USE_FSDP": "true"}, [], True, False),    # FSDP really on (GPUs)
    ({}, [], False, False),                                # DDP or one process, nothing asked
])
def test_an_fsdp_launch_that_accelerate_turns_into_ddp_is_an_error(monkeypatch, env, fsdp, enabled, raises):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    trainer = types.SimpleNamespace(args=types.SimpleNamespace(fsdp=fsdp), is_fsdp_enabled=enabled,
                                    accelerator=types.SimpleNamespace(distributed_type="MULTI_CPU"))
    if raises:
        with pytest.raises(ConfigError, match="Stage 'sft-1'.*accelerate runs FSDP only on GPUs"):
            require_fsdp_when_asked(trainer, "sft-1")
    else:
        require_fsdp_when_asked(trainer, "sft-1")
