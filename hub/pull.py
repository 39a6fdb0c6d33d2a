"""Download a model or dataset repo into a plain folder (no symlinks into the cache), ready for `from_pretrained`.

    infimed pull my-org/infimed-demo --local-dir models/infimed-demo
"""

from __future__ import annotations

import logging
from pathlib import Path

from .checks import check_model_folder

__all__ = ["pull"]

logger = logging.getLogger(__name__)


def pull(
    repo_id: str,
    local_dir: str | Path,
    revision: str | None = None,
    *,
    repo_type: str = "model",
    token: str | None = None,
) -> str:
    """Download every file of `repo_id` at `revision` (branch, tag or commit; default `main`) into `local_dir`.

    Files already present with the same commit are not downloaded again. For models, a folder that would not load
    with `trust_remote_code=True` is reported with a warning (it may have been pushed by another tool).

    Returns:
        The absolute path of `local_dir`.
    """
    from huggingface_hub import constants, snapshot_download

    if Path(local_dir).expanduser().exists() and not Path(local_dir).expanduser().is_dir():
        raise NotADirectoryError(f"`--local-dir` {str(local_dir)!r} is an existing file, not a folder; pass a folder "
                                 "path (it is created if missing).")
    if constants.HF_HUB_OFFLINE:
        raise ValueError("Cannot pull while `HF_HUB_OFFLINE=1` is set (the Makefile sets it for tests and the demo); "
                         "unset it, e.g. `HF_HUB_OFFLINE=0 infimed pull ...`.")
    if repo_type not in ("model", "dataset"):
        raise ValueError(f"`repo_type={repo_type!r}` is not supported; use 'model' or 'dataset'.")
    path = snapshot_download(repo_id, repo_type=repo_type, revision=revision, local_dir=str(local_dir), token=token)
    logger.info("Pulled %s %s (revision %s) into %s", repo_type, repo_id, revision or "main", path)
    if repo_type == "model":
        for problem in check_model_folder(path):
            logger.warning("%s: %s", repo_id, problem)
    return str(Path(path).resolve())
