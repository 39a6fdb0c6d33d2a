"""Who writes under a multi-process launch (accelerate DDP/FSDP2/ZeRO-3, torchrun): the main process, once.

`infimed train` runs the same recipe in every process. Files a stage hands over (the first checkpoint, each stage's
output, summaries) are written by the main process alone, and the other processes wait at a barrier before they
read them:

    rank 0:  init ──────────┐ train ── save (gathered) ── summary ─┐ next stage loads
    rank 1:  wait ──────────┴ train ── save (gathers, no write) ───┴ next stage loads
                       barrier                               barrier

The process state is accelerate's `PartialState` (the one `TrainingArguments` uses): it reads the launcher's
environment (`RANK`, `WORLD_SIZE`, ...) and, in a single process, makes every call here a no-op.
"""

from __future__ import annotations

import contextlib
import os

from infimed.core.config import ConfigError

__all__ = ["is_main_process", "main_process_first", "require_fsdp_when_asked", "wait_for_everyone"]


def _state():
    from accelerate import PartialState  # heavy; only when a recipe runs

    return PartialState()


def is_main_process() -> bool:
    """Whether this process writes shared files (rank 0 across all nodes; True in a single process)."""
    return _state().is_main_process


def wait_for_everyone() -> None:
    """Barrier: every process waits here until all have arrived (a no-op in a single process)."""
    _state().wait_for_everyone()


@contextlib.contextmanager
def main_process_first():
    """Run the block on the main process first; the others run it once the main process has left it."""
    with _state().main_process_first():
        yield


def require_fsdp_when_asked(trainer, stage_name: str) -> None:
    """Raise when the launch or the stage asks for FSDP but the trainer did not enable it.

    accelerate turns an FSDP launch into FSDP only on GPU-like devices; on CPU it runs DDP (or, with `use_cpu: false`
    and no GPU, one unsynchronised process per rank) without a word, so a user would train a replicated model while
    believing it sharded.
    """
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") or bool(trainer.args.fsdp)
    if asked and not trainer.is_fsdp_enabled:
        raise ConfigError(
            f"Stage {stage_name!r}: FSDP was asked for (an FSDP accelerate config, `ACCELERATE_USE_FSDP`, or the "
            f"stage's `fsdp` key) but accelerate did not enable it (distributed type "
            f"{trainer.accelerator.distributed_type}): accelerate runs FSDP only on GPUs. Launch with "
            "`recipes/accelerate/ddp.yaml` or `torchrun` on CPU, or run on GPUs."
        )
