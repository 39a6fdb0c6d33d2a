"""The curation output folder is replaced whole, and only by a finished run.

    work = start_output(out, overwrite)     # checks `out`; an empty sibling `.<name>.partial` to write into
    ...                                     # write shards, dropped.jsonl, report, card, audit into `work`
    finish_output(work, out)                # swap `work` in for `out`; the previous output goes only now

A run that fails or is killed before `finish_output` leaves `out` as it was (the next run removes the stale
`.partial` sibling). The judge's answer cache (`out/judge_cache`) is not output: it survives every run, so a rerun
never pays twice for the same sample.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from infimed.core.errors import InputFileError

__all__ = ["JUDGE_CACHE", "discard_output", "finish_output", "start_output"]

JUDGE_CACHE = "judge_cache"
_REPORT = "curation_report.json"


def _partial(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def start_output(out: Path, overwrite: bool) -> Path:
    """Check that `out` may be replaced; return an empty sibling folder to write the new output into.

    A folder holding anything but a judge cache must be an earlier `infimed curate` output (it has
    `curation_report.json`) and needs `overwrite`; any other non-empty folder is refused, so that `--overwrite`
    never deletes unrelated files.
    """
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--output {out} is a file; curation writes a folder. Pick a folder path.")
    contents = sorted(p.name for p in out.iterdir() if p.name != JUDGE_CACHE) if out.is_dir() else []
    if contents and not (out / _REPORT).is_file():
        raise InputFileError(f"--output {out} is not empty ({', '.join(contents[:5])}) and is not an earlier curation "
                             "output; pick a new or empty folder.")
    if contents and not overwrite:
        raise InputFileError(f"--output {out} already holds a curation output; pass --overwrite to replace it "
                             "(it is replaced only once the new run has finished) or pick another folder.")
    work = _partial(out)
    shutil.rmtree(work, ignore_errors=True)  # left by a run that was killed
    work.mkdir(parents=True)
    return work


def finish_output(work: Path, out: Path) -> None:
    """Put the finished output `work` in place of `out`, keeping `out`'s judge cache."""
    if (out / JUDGE_CACHE).is_dir() and not (work / JUDGE_CACHE).exists():
        os.replace(out / JUDGE_CACHE, work / JUDGE_CACHE)
    previous = out.parent / f".{out.name}.previous"
    shutil.rmtree(previous, ignore_errors=True)
    if out.exists():
        os.replace(out, previous)  # two renames: between them only `previous` holds the old output
    os.replace(work, out)
    shutil.rmtree(previous, ignore_errors=True)


def discard_output(work: Path) -> None:
    """Remove the unfinished output of a failed run; `out` is untouched."""
    shutil.rmtree(work, ignore_errors=True)
