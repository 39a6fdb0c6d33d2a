"""Push a checkpoint or a curated dataset to the Hub in one commit, after checking it would load.

    infimed push-model runs/demo/grpo --repo my-org/infimed-demo --private
    infimed push-dataset curated/ --repo my-org/infimed-curated

The token comes from `token=`, else `HF_TOKEN`, else the `hf auth login` store (huggingface_hub's usual order). It is
only ever handed to `huggingface_hub`; nothing here logs, prints or writes it, and a push is refused when any file
about to be uploaded contains it (a token pasted into a config or a card would otherwise go public).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

from infimed.model_cards import render_model_card

from .checks import DATASET_FILE_PATTERNS, MODEL_FILE_PATTERNS, check_dataset_folder, check_model_folder, select_files

__all__ = ["push_dataset", "push_metric", "push_model"]

logger = logging.getLogger(__name__)

# Files larger than this are weights/shards; scanning them for a leaked token would read gigabytes for nothing
# (safetensors headers are scanned separately because they may carry free-form metadata).
TOKEN_SCAN_MAX_BYTES = 20 * 1024 * 1024


def _validate_repo_id(repo_id: str) -> None:
    """The Hub's own grammar (`validate_repo_id`), plus a namespace: a bare name would land in whichever account the
    token belongs to, so a push always names it."""
    try:
        validate_repo_id(repo_id)
        valid = isinstance(repo_id, str) and repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise ValueError(
            f"`repo_id={repo_id!r}` is not a Hub repo id; use ORG/NAME with letters, digits, '-', '_' or '.' "
            "(e.g. `my-org/infimed-foundation-1.7b`)."
        )


def _refuse_leaked_token(folder: Path, files: list[str], extra: dict[str, bytes], token: str | None) -> None:
    if not token:
        return
    needle = token.encode()
    for rel in files:
        path = folder / rel
        with path.open("rb") as handle:
            head = handle.read(TOKEN_SCAN_MAX_BYTES)
        if needle in head:
            raise ValueError(
                f"Refusing to push: {path} contains your Hugging Face access token. Remove it from the file (tokens "
                "belong in `HF_TOKEN` or `hf auth login`, never in configs or cards) and revoke the token if it was "
                "ever shared."
            )
    for rel, content in extra.items():
        if needle in content:
            raise ValueError(f"Refusing to push: the generated {rel} contains your access token; remove it from the "
                             "recipe/results files the card is rendered from.")


def _push(
    folder: Path,
    files: list[str],
    repo_id: str,
    repo_type: str,
    *,
    private: bool,
    revision: str | None,
    commit_message: str,
    token: str | None,
    extra: dict[str, bytes] | None = None,
) -> str:
    """Create the repo (and branch) if needed, then upload `files` plus generated `extra` contents in ONE commit."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ValueError("Cannot push while `HF_HUB_OFFLINE=1` is set (the Makefile sets it for tests and the "
                         "demo); unset it, e.g. `HF_HUB_OFFLINE=0 infimed push-model ...`.")
    extra = extra or {}
    _refuse_leaked_token(folder, files, extra, token or get_token())
    api = HfApi(token=token)
    # A Space needs its SDK at creation; `evaluate` metric Spaces run a gradio widget.
    space = {"space_sdk": "gradio"} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **space)
    info = api.repo_info(repo_id, repo_type=repo_type)
    if private and not info.private:
        logger.warning("%s already exists and is public: `private=True` is ignored (change it in the repo settings).",
                       repo_id)
    if revision not in (None, "main"):
        if re.fullmatch(r"[0-9a-f]{40}", revision):
            raise ValueError(f"`revision={revision}` is a commit hash; pushes go to a branch, pass a branch name.")
        api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in files]
    operations += [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=content) for rel, content in extra.items()]
    commit = api.create_commit(
        repo_id, operations=operations, commit_message=commit_message, repo_type=repo_type, revision=revision
    )
    logger.info("Pushed %d files to %s %s (revision %s): %s", len(operations), repo_type, repo_id,
                revision or "main", commit.commit_url)
    return commit.commit_url


def _refuse(kind: str, folder: Path, repo_id: str, problems: list[str]) -> None:
    listing = "\n".join(f"  - {p}" for p in problems)
    raise ValueError(
        f"Refusing to push {kind} folder {folder} to {repo_id}: it would not load from the Hub.\n{listing}"
    )


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a `save_pretrained` checkpoint (weights, config with `auto_map`, code, processor, card) in one commit.

    Refuses (`ValueError` listing every problem) a folder that `check_model_folder` finds incomplete. Files a model
    repo does not need (optimizer states, logs) are left out and named in a log line. Without a README.md, a card is
    rendered from the checkpoint (and a `recipe_summary.json` next to it) and uploaded; the folder is not modified.

    Returns:
        The URL of the commit.
    """
    folder = Path(folder)
    _validate_repo_id(repo_id)
    problems = check_model_folder(folder)
    if problems:
        _refuse("model", folder, repo_id, problems)
    files, skipped = select_files(folder, MODEL_FILE_PATTERNS)
    if skipped:
        logger.info("Not uploading %d files a model repo does not need: %s", len(skipped), ", ".join(skipped))
    if not (folder / "generation_config.json").is_file():
        logger.warning("%s has no generation_config.json: `generate()` will fall back to the model config's defaults.",
                       folder)
    extra = {}
    if "README.md" not in files:

        logger.warning("%s has no README.md: uploading a card rendered from the checkpoint alone; run `infimed card "
                       "--model %s --eval-results ... --recipe ...` for one with results and training stages.",
                       folder, folder)
        extra["README.md"] = str(render_model_card(folder, repo_id=repo_id)).encode()
    return _push(folder, files, repo_id, "model", private=private, revision=revision, token=token, extra=extra,
                 commit_message=commit_message or f"Upload {folder.name} with infimed push-model")


def push_dataset(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a curated dataset folder (parquet shards, README.md card, JSON reports) to a dataset repo in one commit.

    Returns:
        The URL of the commit.
    """
    folder = Path(folder)
    _validate_repo_id(repo_id)
    problems = check_dataset_folder(folder)
    if problems:
        _refuse("dataset", folder, repo_id, problems)
    files, skipped = select_files(folder, DATASET_FILE_PATTERNS)
    if skipped:
        logger.info("Not uploading %d files that are not shards, card or reports: %s", len(skipped),
                    ", ".join(skipped))
    return _push(folder, files, repo_id, "dataset", private=private, revision=revision, token=token,
                 commit_message=commit_message or f"Upload {folder.name} with infimed push-dataset")


def push_metric(
    files: dict[str, bytes],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload an ``evaluate`` metric module (``{path in repo: content}``) to a Space in one commit.

    ``evaluate.load("ORG/NAME")`` reads ``NAME.py`` from the Space ``ORG/NAME``, so ``files`` must hold it.

    Returns:
        The URL of the commit.
    """
    _validate_repo_id(repo_id)
    script = f"{repo_id.split('/')[1]}.py"
    if script not in files:
        raise ValueError(f"A metric Space {repo_id} must hold `{script}` (what `evaluate.load` reads); got "
                         f"{sorted(files)}.")
    return _push(Path("."), [], repo_id, "space", private=private, revision=revision, token=token, extra=files,
                 commit_message=commit_message or f"Upload the {script} metric with infimed push-metric")
