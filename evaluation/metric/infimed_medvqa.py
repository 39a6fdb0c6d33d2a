"""InfiMed medical VQA accuracy: the one answer scorer of ``infimed.core.answers`` (also the RL reward), as an
``evaluate`` metric. ``mode="compat"`` scores MedEvalKit's way (``infimed.evaluation.compat``) instead.

    metric = evaluate.load("path/to/infimed_medvqa.py")
    metric.compute(predictions=["B. Lung"], references=["B"], kinds=["multiple_choice"],
                   options=[["Liver", "Lung", "Heart"]])

This file is loaded by ``evaluate`` outside the package (it copies the script), so its imports are absolute.
"""

from __future__ import annotations

import random

import datasets
import evaluate

from infimed.core.answers import score_answer
from infimed.core.tasks import QuestionKind
from infimed.evaluation.compat import compat_score_item
from infimed.evaluation.items import EvalItem

_DESCRIPTION = """\
Accuracy of medical visual question answering, scored by InfiMed's answer reader: an option letter in any surface
form or the text of exactly one option for multiple choice; yes/no by word boundaries (given the question, implicit
answers to presence questions such as "There is no effusion"); normalised exact match for short and open answers.
Nothing unreadable is mapped to an option: it is counted as `unparsed` (and wrong). `mode="compat"` reproduces
MedEvalKit's scoring, including its nearest-option and substring yes/no rules, for side-by-side numbers.
"""

_CITATION = """\
@misc{infimed2025,
  title={InfiMed: Low-Resource Medical MLLMs with Advancing Understanding and Reasoning},
  eprint={2505.23867},
  archivePrefix={arXiv},
  year={2025}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): model outputs (reasoning traces, <answer> tags and \\boxed{} are handled).
    references (`list[str]`): gold answers (an option letter for multiple choice, yes/no for yes/no).
    kinds (`list[str]`, optional): question kind per item: multiple_choice, yes_no, closed, open, caption
        (default: open).
    options (`list[list[str]]`, optional): option texts per item (multiple choice).
    questions (`list[str]`, optional): question per item (decides implicit yes/no answers).
    mode (`str`): "default" (InfiMed's scorer) or "compat" (MedEvalKit's).
    benchmarks (`list[str]`, optional, compat): benchmark per item (MMMU has its own parser).
    answer_types (`list[str]`, optional, compat): "closed" or "open" per item.
    sources (`list[dict]`, optional, compat): each item's source strings (`question`, `answer`, `options`,
        `context` as the dataset gives them), which MedEvalKit scores against.
    seed (`int`, compat): seed of MMMU's random option for unreadable answers, 42 as in MedEvalKit.
Returns:
    accuracy, correct, unparsed (default mode) and num_items; scores: 1/0 per item.
Examples:
    >>> metric = evaluate.load("infimed_medvqa.py")
    >>> metric.compute(predictions=["(b)"], references=["B"], kinds=["multiple_choice"], options=[["x", "y"]])
    {'accuracy': 1.0, 'correct': 1, 'num_items': 1, 'scores': [1], 'unparsed': 0}
"""

_PROMPT_TYPE = {QuestionKind.MULTIPLE_CHOICE: "multiple_choice", QuestionKind.YES_NO: "judgement"}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InfiMedMedVQA(evaluate.Metric):
    """Medical VQA accuracy through ``infimed.core.answers.score_answer`` (or MedEvalKit's rules in compat mode)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, kinds=None, options=None, questions=None, mode="default",
                 benchmarks=None, answer_types=None, sources=None, seed=42):
        n = len(predictions)
        kinds = kinds or [QuestionKind.OPEN.value] * n
        options = options or [[] for _ in range(n)]
        questions = questions or [""] * n
        if not len(kinds) == len(options) == len(questions) == n:
            raise ValueError(f"`kinds`, `options` and `questions` need one entry per prediction ({n}); got "
                             f"{len(kinds)}, {len(options)} and {len(questions)}.")
        if mode == "default":
            matches = [score_answer(p, r, k, o or None, question=q or None)
                       for p, r, k, o, q in zip(predictions, references, kinds, options, questions)]
            scores = [int(m.correct) for m in matches]
            unparsed = sum(not m.parsed for m in matches)
            return {"accuracy": sum(scores) / n if n else 0.0, "correct": sum(scores), "num_items": n,
                    "scores": scores, "unparsed": unparsed}
        if mode != "compat":
            raise ValueError(f"`mode` must be 'default' or 'compat', got {mode!r}.")
        benchmarks = benchmarks or ["custom"] * n
        answer_types = answer_types or [None] * n
        sources = sources or [{} for _ in range(n)]
        rng = random.Random(seed)  # one draw per unreadable MMMU answer, in item order, as the harness does
        scores = []
        for i, (p, r, k, o, q) in enumerate(zip(predictions, references, kinds, options, questions)):
            item = EvalItem(id=str(i), benchmark=benchmarks[i], question=q, answer=r, kind=k,
                            prompt_type=_PROMPT_TYPE.get(k, "open_ended"), options=list(o),
                            source=dict(sources[i] or {}),
                            category={"answer_type": answer_types[i]} if answer_types[i] else {})
            scores.append(int(bool(compat_score_item(item, p or "", rng)["compat"]["correct"])))
        return {"accuracy": sum(scores) / n if n else 0.0, "correct": sum(scores), "num_items": n, "scores": scores}
