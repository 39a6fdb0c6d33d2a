"""InfiMed evaluation: MedEvalKit-compatible medical benchmarks, correct scoring, batched generation.

The answer extraction (:mod:`infimed.core.answers`, re-exported here) is shared with the RL rewards. Heavy modules
(generation, runner) import torch/transformers only when used.
"""

from infimed.core.answers import (
    AnswerMatch,
    extract_choice,
    extract_final_answer,
    extract_yes_no,
    normalize_answer,
    score_answer,
)

__all__ = [
    "AnswerMatch",
    "EvalConfig",
    "extract_choice",
    "extract_final_answer",
    "extract_yes_no",
    "normalize_answer",
    "run_evaluation",
    "score_answer",
]


def __getattr__(name):
    # EvalConfig / run_evaluation pull in datasets and the converters: import them on first use only.
    if name in ("EvalConfig", "run_evaluation"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
