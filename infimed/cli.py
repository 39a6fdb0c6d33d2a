"""The ``infimed`` console script.

Each subcommand lives in its own module under ``infimed.commands`` with two functions:
``add_arguments(parser)`` and ``main(args) -> int | None``. Its parser is a ``ConfigParser`` (``infimed.core.config``):
flags come from config dataclass fields and their help metadata, with an optional YAML config file under them.
Modules are imported only when their subcommand runs (or its ``--help`` is asked for), so ``infimed --help`` stays
fast and never imports torch.

    infimed --help
    infimed init --preset tiny --output runs/tiny
    infimed --debug eval eval.yaml        # a user error with its full traceback

A user error (a bad config value, a missing file, a malformed data line) ends the run with one ``error: <message>``
line on stderr and exit status 2 (1 when interrupted); ``--debug`` or ``INFIMED_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from infimed.core.config import ConfigParser
from infimed.core.errors import InfiMedError

__all__ = ["COMMANDS", "main"]

# What a user can cause and fix: printed as one line. ImageLoadError and ConfigError are ValueErrors; OSError covers
# missing or unreadable paths (FileNotFoundError, IsADirectoryError, PermissionError) and Hub HTTP errors.
USER_ERRORS = (InfiMedError, ValueError, OSError)
USER_ERROR_STATUS = 2  # argparse's status for a usage error, which these are
INTERRUPTED_STATUS = 1

# name -> (module under infimed.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create an InfiMed checkpoint from a preset or from pretrained parts."),
    "generate": ("generate", "Answer a prompt about an image (PNG/JPEG/DICOM) with a checkpoint."),
    "demo-data": ("demo_data", "Write the synthetic, learnable medical VQA demo dataset."),
    "curate": ("curate", "Score, filter, deduplicate and decontaminate training data into a curated dataset."),
    "synthesize-cot": ("synthesize_cot", "Write chain-of-thought SFT data with a teacher model and rejection sampling."),
    "push-model": ("push_model", "Push a checkpoint (weights, code, processor, card) to the Hub in one checked commit."),
    "pull": ("pull", "Download a model or dataset repo from the Hub into a local folder."),
    "eval": ("eval", "Evaluate a model (or given predictions) on medical benchmarks, MedEvalKit-compatible."),
    "card": ("card", "Render a checkpoint's model card from its recipe and evaluation results."),
    "push-dataset": ("push_dataset", "Push a curated dataset folder (parquet shards + card) to the Hub."),
    "push-metric": ("push_metric", "Publish the evaluation scorer as an `evaluate` metric Space on the Hub."),
    "train": ("train", "Run a multi-stage training recipe (packed SFT stages, GRPO) from a YAML file."),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"infimed.commands.{module_name}")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infimed",
        description="InfiMed: build, train, evaluate and publish medical multimodal LLMs.",
    )
    parser.add_argument(
        "--debug", action="store_true",
        help="Show the full traceback of an error (default: one `error:` line). Same as INFIMED_DEBUG=1.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ConfigParser)
    # Only the subcommand being run imports its module; the others register a bare parser for the listing.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:
            _load(name).add_arguments(sp)
    return parser


def _one_line(err: BaseException) -> str:
    message = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return message or type(err).__name__


def _report(err: BaseException, debug: bool, status: int) -> int:
    if debug:
        traceback.print_exception(err)
    print(f"error: {_one_line(err)}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None, *, report_errors: bool | None = None) -> int:
    """Run one subcommand; returns the exit status.

    ``report_errors`` (default: only when run as the console script, i.e. ``argv`` is None) turns a user error into
    one ``error:`` line and status 2; a caller passing ``argv`` gets the typed exception instead, to catch or assert.
    """
    report_errors = argv is None if report_errors is None else report_errors
    argv = list(sys.argv[1:] if argv is None else argv)
    # Read before parsing: an error can come from the parser itself (a YAML config file is read there).
    debug = "--debug" in argv or os.environ.get("INFIMED_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        result = _load(args.command).main(args)
    except KeyboardInterrupt as err:
        if not report_errors:
            raise
        return _report(err if str(err) else KeyboardInterrupt("interrupted"), debug, INTERRUPTED_STATUS)
    except USER_ERRORS as err:
        if not report_errors:
            raise
        return _report(err, debug, USER_ERROR_STATUS)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
