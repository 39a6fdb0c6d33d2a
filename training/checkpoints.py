"""Stage checkpoints: which one a resume can use, what a failed write means, and the stage's whole-run loss.

A `checkpoint-*` folder is usable only when it is complete (`checkpoint_problem` says why not): a save cut by a kill
or a full disk leaves one that would crash `--resume`, so `last_checkpoint` skips it (with a log line) and takes the
newest complete one. See docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from typing import Any

from safetensors import safe_open

from infimed.core.errors import InfiMedError

__all__ = [
    "CheckpointWriteError",
    "checkpoint_problem",
    "last_checkpoint",
    "reached_budget",
    "resume_point",
    "stage_train_loss",
    "writing_to",
]

logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


_FSDP_MODEL = "pytorch_model_fsdp"  # accelerate's FSDP_MODEL_NAME: the Trainer's FSDP checkpoints


# What a failed write looks like: errno values of a full or read-only disk, and torch.save's C++ writer messages
# (`inline_container.cc: PytorchStreamWriter failed writing file`), which carry no errno.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


_WRITE_MESSAGES = ("No space left on device", "Disk quota exceeded", "PytorchStreamWriter failed", "file write failed")


class CheckpointWriteError(InfiMedError, OSError):
    """Saving a checkpoint or a stage's output failed (full disk, quota, read-only folder); names folder and space."""


def checkpoint_problem(folder: str) -> str | None:
    """Why the `checkpoint-*` folder cannot be resumed from (a save cut short), or None when it is complete.

    Complete means: `trainer_state.json` parses, every weights file (`model.safetensors`, the shards of
    `model.safetensors.index.json`, or a PEFT `adapter_model.safetensors`) has a readable safetensors header that
    covers the file, and the optimizer and scheduler states exist. Checkpoints written under FSDP or DeepSpeed are
    complete when their own end-of-save marker exists (`_sharded_problem`).
    """
    try:
        with open(os.path.join(folder, "trainer_state.json")) as f:
            json.load(f)
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError) as err:
        return f"trainer_state.json does not parse ({err})"
    sharded = _sharded_problem(folder)
    if sharded is not None:
        return sharded or (None if os.path.exists(os.path.join(folder, "scheduler.pt")) else "no scheduler.pt")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index) as f:
                weights = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as err:
            return f"model.safetensors.index.json does not parse ({err})"
    else:
        names = ("model.safetensors", "adapter_model.safetensors")
        weights = [n for n in names if os.path.exists(os.path.join(folder, n))]
        if not weights:
            return "no model.safetensors (or adapter_model.safetensors)"
    for name in weights:
        try:
            with safe_open(os.path.join(folder, name), "pt") as f:
                f.keys()
        except Exception as err:  # SafetensorError (a cut file) derives from Exception only
            return f"{name} does not load ({err})"
    if not any(os.path.exists(os.path.join(folder, n)) for n in ("optimizer.pt", "optimizer.bin")):
        return "no optimizer state (optimizer.pt)"
    if not os.path.exists(os.path.join(folder, "scheduler.pt")):
        return "no scheduler state (scheduler.pt)"
    return None


def _sharded_problem(folder: str) -> str | None:
    """For a checkpoint the Trainer wrote under FSDP or DeepSpeed: "" when complete, else why not; None otherwise.

    FSDP's sharded folders (`pytorch_model_fsdp_0`, `optimizer_0`) are torch.distributed.checkpoint folders, whose
    `.metadata` is written once every shard is; DeepSpeed writes `latest` once its `global_step*` folder is complete.
    """
    fsdp = [name for name in (f"{_FSDP_MODEL}_0", "optimizer_0") if os.path.isdir(os.path.join(folder, name))]
    if fsdp:
        cut = [name for name in fsdp if not os.path.exists(os.path.join(folder, name, ".metadata"))]
        return f"FSDP folder(s) {cut} have no .metadata" if cut else ("" if len(fsdp) == 2 else "no FSDP optimizer_0")
    if any(name.startswith("global_step") for name in os.listdir(folder)):
        return "" if os.path.exists(os.path.join(folder, "latest")) else "DeepSpeed checkpoint without `latest`"
    return None


def last_checkpoint(output_dir: str, skipped: dict[str, str] | None = None) -> str | None:
    """The newest complete `checkpoint-*` folder in `output_dir` (what `--resume` continues from), or None.

    Each newer, incomplete one is logged with the reason (`checkpoint_problem`) and recorded in `skipped`
    (folder -> reason) when given.
    """
    if not os.path.isdir(output_dir):
        return None
    numbered = [(int(m.group(1)), name) for name in os.listdir(output_dir)
                if (m := _CHECKPOINT.fullmatch(name)) and os.path.isdir(os.path.join(output_dir, name))]
    for _, name in sorted(numbered, reverse=True):
        folder = os.path.join(output_dir, name)
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        logger.warning("Skipping checkpoint %s: %s (a save cut short); trying the one before it.", folder, problem)
        if skipped is not None:
            skipped[folder] = problem
    return None


def _free_space(path: str) -> str:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    try:
        return f"{shutil.disk_usage(path or '.').free / 2**30:.2f} GiB"
    except OSError:
        return "unknown space"


@contextlib.contextmanager
def writing_to(folder: str):
    """Turn a failed write under `folder` (full disk, quota, read-only) into one error naming it and its free space."""
    try:
        yield
    except Exception as err:  # torch.save raises RuntimeError, safetensors SafetensorError, the OS OSError
        if getattr(err, "errno", None) not in _WRITE_ERRNOS and not any(m in str(err) for m in _WRITE_MESSAGES):
            raise
        raise CheckpointWriteError(
            f"Writing to {folder} failed ({str(err).strip().splitlines()[0]}); {_free_space(folder)} free there. "
            "Free some space (or lower the stage's `save_total_limit`), then rerun with `--resume`: it continues "
            "from the last complete checkpoint."
        ) from err


def stage_train_loss(log_history: list[dict], resumed_at: int, resumed_loss: float | None, last_step: int):
    """Mean training loss per step over the whole stage, also when it was resumed at step `resumed_at`.

    Steps up to `resumed_at` count with the losses logged before the cut (each `loss` entry covers the steps since
    the previous one, as the Trainer logs them); the steps after it with the Trainer's own mean (`resumed_loss`).
    """
    total, covered, previous = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and previous < entry.get("step", 0) <= resumed_at:
            total += entry["loss"] * (entry["step"] - previous)
            covered, previous = covered + entry["step"] - previous, entry["step"]
    after = last_step - resumed_at
    if after > 0 and resumed_loss is not None:
        total, covered = total + resumed_loss * after, covered + after
    return total / covered if covered else resumed_loss


def resume_point(output_dir: str, args) -> tuple[str | None, Any]:
    """The checkpoint to resume from (cut ones removed, with a log line) and its `TrainerState`, or (None, None)."""
    from transformers import TrainerState

    skipped: dict[str, str] = {}
    checkpoint = last_checkpoint(output_dir, skipped)
    for folder in skipped:  # removed, so the Trainer's rotation never keeps a cut folder in place of a good one
        shutil.rmtree(folder, ignore_errors=True)
    if checkpoint is None:
        return None, None
    return checkpoint, TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))


def reached_budget(state, args) -> bool:
    """Whether a checkpoint's state has used the stage's step budget (`max_steps`, else the epochs it computed)."""
    budget = args.max_steps if args.max_steps > 0 else state.max_steps
    return state.global_step >= budget > 0
