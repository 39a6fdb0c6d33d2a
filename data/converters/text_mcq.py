"""Text-only medical question sets.

- MedQA-USMLE (``GBaker/MedQA-USMLE-4-options``): ``question``, ``options`` (letter -> text), ``answer_idx`` (letter),
  ``answer`` (text), ``meta_info``.
- MedMCQA (``openlifescienceai/medmcqa``): ``id``, ``question``, ``opa``..``opd``, ``cop`` (0-based correct index),
  ``exp``, ``subject_name``, ``topic_name``, ``choice_type``.
- PubMedQA, two layouts:
  ``qiaojin/PubMedQA`` ``pqa_labeled``: ``pubid``, ``question``, ``context`` (``{"contexts": [...], ...}`` or text),
  ``long_answer``, ``final_decision`` (yes/no/maybe);
  ``openlifescienceai/pubmedqa`` (the benchmark MedEvalKit reads, split ``test``): ``{"id", "data": {"Question",
  "Context" (list of paragraphs), "Options" ({"A": "yes", "B": "no", "C": "maybe"}), "Correct Option",
  "Correct Answer", ...}}``.
  Three-way, so it becomes ``multiple_choice`` over the options with the context paragraphs before the question;
  ``meta["source"]`` keeps the raw question, context, options and gold for MedEvalKit's prompt.
"""

from __future__ import annotations

from infimed.core.tasks import LETTERS, QuestionKind, letter_for

from .records import MedRecord
from .sources import is_local, load_table

__all__ = ["read_medqa", "read_medmcqa", "read_pubmedqa"]

PUBMEDQA_OPTIONS = ["yes", "no", "maybe"]


def read_medqa(source: str = "GBaker/MedQA-USMLE-4-options", split: str | None = "test", **opts) -> list[MedRecord]:
    split = split or "test"
    records = []
    for i, row in enumerate(load_table(source, split)):
        raw = row.get("options") or {}
        if isinstance(raw, dict):
            letters = sorted(k for k, v in raw.items() if v is not None)
            options = [str(raw[k]) for k in letters]
        else:
            options = [str(v) for v in raw]
        answer = letter_for(str(row.get("answer_idx") or ""), options)
        answer = answer or letter_for(str(row.get("answer", "")), options)
        records.append(
            MedRecord(
                id=f"medqa-{split}-{i}",
                images=[],
                question=str(row.get("question", "")),
                options=options,
                answer=answer or str(row.get("answer_idx") or ""),
                kind=QuestionKind.MULTIPLE_CHOICE,
                meta={"meta_info": row.get("meta_info"),
                      "source": {"question": str(row.get("question", "")), "answer": str(row.get("answer_idx") or "")}},
            )
        )
    return records


def read_medmcqa(source: str = "openlifescienceai/medmcqa", split: str | None = "validation", **opts):
    """MedMCQA; its public test split has no answers (``cop`` = -1): those rows keep an empty answer, which
    curation drops with a reason."""
    split = split or "validation"
    records = []
    for i, row in enumerate(load_table(source, split)):
        options = [str(row.get(f"op{c}") or "") for c in "abcd"]
        cop = row.get("cop")
        answer = LETTERS[int(cop)] if isinstance(cop, int) and 0 <= cop < len(options) else ""
        records.append(
            MedRecord(
                id=str(row.get("id") or f"medmcqa-{split}-{i}"),
                images=[],
                question=str(row.get("question", "")),
                options=options,
                answer=answer,
                kind=QuestionKind.MULTIPLE_CHOICE,
                meta={k: row.get(k) for k in ("subject_name", "topic_name", "choice_type", "exp")},
            )
        )
    return records


def _context_text(context) -> str:
    if isinstance(context, dict):
        parts = context.get("contexts") or context.get("context") or []
        return "\n".join(str(p) for p in parts) if isinstance(parts, list) else str(parts)
    if isinstance(context, list):
        return "\n".join(str(p) for p in context)
    return str(context or "")


def _pubmedqa_record(rid: str, context: str, question: str, options: list[str], answer: str, gold: str,
                     meta: dict) -> MedRecord:
    """One PubMedQA item, whichever layout it came from; ``gold`` is the raw label kept for MedEvalKit compat."""
    return MedRecord(
        id=rid,
        images=[],
        question=f"Context: {context}\nQuestion: {question}" if context else question,
        options=options,
        answer=answer,
        kind=QuestionKind.MULTIPLE_CHOICE,
        meta={**meta, "raw_question": question,
              "source": {"question": question, "context": context, "answer": gold, "options": options}},
    )


def _pubmedqa_labeled(row: dict, i: int) -> MedRecord:
    decision = str(row.get("final_decision", "")).strip().lower()
    options = list(PUBMEDQA_OPTIONS)
    return _pubmedqa_record(
        f"pubmedqa-{row.get('pubid', i)}", _context_text(row.get("context")), str(row.get("question", "")), options,
        letter_for(decision, options) or "", decision,
        {"pubid": row.get("pubid"), "long_answer": row.get("long_answer")},
    )


def _pubmedqa_openlifescience(row: dict, i: int) -> MedRecord:
    data = row["data"] or {}
    raw_options = data.get("Options") or {}
    letters = sorted(k for k, v in raw_options.items() if v is not None)
    options = [str(raw_options[k]) for k in letters] or list(PUBMEDQA_OPTIONS)
    gold = str(data.get("Correct Option") or "").strip()
    # "Correct Option" is the letter; "Correct Answer" the text (either one is enough to find the letter).
    answer = letter_for(gold, options) or letter_for(str(data.get("Correct Answer") or ""), options) or ""
    return _pubmedqa_record(
        f"pubmedqa-{row.get('id', i)}", _context_text(data.get("Context")), str(data.get("Question", "")), options,
        answer, gold, {"long_answer": data.get("Long Answer")},
    )


def read_pubmedqa(source: str = "qiaojin/PubMedQA", split: str | None = "train", config: str | None = "pqa_labeled",
                  **opts) -> list[MedRecord]:
    """PubMedQA items in either layout (decided per row: a ``data`` field marks the openlifescienceai one)."""
    split = split or "train"
    table = load_table(source, split, config=None if is_local(source) else config)
    records = []
    for i, row in enumerate(table):
        if isinstance(row.get("data"), dict):
            records.append(_pubmedqa_openlifescience(row, i))
        elif "question" in row or "final_decision" in row:
            records.append(_pubmedqa_labeled(row, i))
        else:
            raise ValueError(
                f"PubMedQA row {i} of {source!r} has neither a `data` field (openlifescienceai/pubmedqa) nor "
                f"`question`/`final_decision` (pqa_labeled); its fields are {sorted(row)}."
            )
    return records
