"""`infimed push-metric`: publish the evaluation scorer as an `evaluate` metric Space.

    infimed push-metric --repo-id my-org/infimed_medvqa
    python -c 'import evaluate; print(evaluate.load("my-org/infimed_medvqa").compute(...))'

The Space holds `NAME.py` (the metric module of `infimed.evaluation.metric`, what `evaluate.load("ORG/NAME")` reads),
its card, a gradio `app.py` and `requirements.txt` (the module imports `infimed`). The token comes from `HF_TOKEN` or
`hf auth login`; it is never printed or written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from infimed.core.config import ConfigParser, config_from_args
from infimed.evaluation.metric import METRIC_PATH
from infimed.hub import push_metric

__all__ = ["PushMetricArguments", "add_arguments", "main", "metric_files"]

_APP = """import evaluate
from evaluate.utils import launch_gradio_widget

launch_gradio_widget(evaluate.load("{script}"))
"""


@dataclass
class PushMetricArguments:
    """Where to publish the metric."""

    repo_id: str = field(metadata={"help": "Target Space, ORG/NAME; `evaluate.load('ORG/NAME')` then loads it."})
    private: bool = field(default=False, metadata={"help": "Create the Space as private (ignored if it exists)."})
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to (created from main if missing)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit summary."})


def metric_files(repo_id: str) -> dict[str, bytes]:
    """The Space's files: ``NAME.py``, ``README.md``, ``app.py``, ``requirements.txt``."""
    script = f"{repo_id.split('/')[-1]}.py"
    card = Path(METRIC_PATH).with_name("README.md").read_text(encoding="utf-8").replace("{repo_id}", repo_id)
    return {
        script: Path(METRIC_PATH).read_bytes(),
        "README.md": card.encode(),
        "app.py": _APP.format(script=script).encode(),
        "requirements.txt": b"infimed\nevaluate\n",
    }


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(PushMetricArguments)


def main(namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = config_from_args(PushMetricArguments, namespace)
    url = push_metric(metric_files(args.repo_id), args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message)
    print(f"Pushed the infimed_medvqa metric to space {args.repo_id}: {url}")
    return 0
