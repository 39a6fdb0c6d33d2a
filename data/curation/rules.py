"""Rule scorers for dimensions 1 (image quality), 2 (text quality) and 5 (answer validity).

``score_sample(row, config) -> RuleResult`` is a pure function of one training-format row, so it runs in worker
processes. It decodes each image once, for both the quality checks and the hashes used by dedup/decontamination.
Any failure inside a check (corrupt bytes, wrong field types) becomes a zero score with a named flag, never an
exception. See ``dimensions.py`` for the definitions and scales.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infimed.core.answers import score_answer
from infimed.core.tasks import CHOICE_KINDS, LETTERS, RECORD_KINDS, QuestionKind, normalize_yes_no
from infimed.processing.image_io import load_image

from .config import AnswerRules, ImageRules, TextRules
from .dimensions import SOFT_ISSUE_SCORE

__all__ = ["RuleResult", "ImageStats", "image_checks", "text_checks", "answer_checks", "score_sample",
           "dhash", "exact_image_hash", "detect_language", "count_placeholders", "message_texts"]

# Larger images are shrunk to this side for statistics only: contrast/blur/blank estimates are stable at 512 px and
# a 4k x 4k slide would otherwise dominate run time.
_STATS_SIDE = 512

_IDENTIFIER_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "phone": re.compile(r"(?<!\d)(?:\+?\d{1,3}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)"),
    "ssn": re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"),
    "record_number": re.compile(r"\b(?:MRN|medical record (?:number|no\.?)|patient id)\s*[:#]?\s*\d{4,}", re.I),
}
_LEAK = re.compile(r"\b(?:the )?(?:correct )?answer (?:is|:)\s*\S", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_IMAGE_TOKEN = "<image>"


@dataclass
class ImageStats:
    """What one decoded image contributes: check scores plus hashes."""

    checks: dict[str, float]
    exact: str
    dhash: int


@dataclass
class RuleResult:
    scores: dict[str, float | None]
    flags: list[str] = field(default_factory=list)
    exact_hashes: list[str] = field(default_factory=list)
    dhashes: list[int] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # error messages behind zero scores (e.g. why an image failed)


def exact_image_hash(img) -> str:
    """Hash of the decoded pixels and size: identical for the same picture stored as PNG or as lossless bytes."""
    digest = hashlib.sha1(f"{img.size}".encode())
    digest.update(img.tobytes())
    return digest.hexdigest()


def dhash(img, hash_size: int = 16) -> int:
    """Difference hash: ``hash_size`` x ``hash_size`` bits of "is this pixel brighter than its right neighbour" on a
    downscaled grey image; near-identical pictures differ in few bits."""
    from PIL import Image

    grey = np.asarray(img.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()  # (hash_size * hash_size,)
    return int("".join("1" if b else "0" for b in bits), 2)


def image_checks(img, rules: ImageRules) -> dict[str, float]:
    """Check name -> score in [0, 1] for one decoded RGB image."""
    width, height = img.size
    short, long = min(width, height), max(width, height)
    checks = {
        "low_resolution": min(1.0, short / rules.min_side),
        "aspect_ratio": 1.0 if long <= rules.max_aspect * short else rules.max_aspect * short / long,
    }
    if long > _STATS_SIDE:
        img = img.copy()
        img.thumbnail((_STATS_SIDE, _STATS_SIDE))
    grey8 = np.asarray(img.convert("L"))  # (H, W) uint8
    # Grey-level histogram: mean, std and percentiles from 256 bins instead of sorting every pixel (3x faster).
    hist = np.bincount(grey8.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256) / 255.0
    total = hist.sum()
    mean = float((hist * levels).sum() / total)
    std = float(np.sqrt(max(0.0, (hist * (levels - mean) ** 2).sum() / total)))
    if std < rules.min_std:
        checks["near_constant"] = 0.0
        return checks
    cdf = np.cumsum(hist) / total
    low, high = np.searchsorted(cdf, 0.01) / 255.0, np.searchsorted(cdf, 0.99) / 255.0
    checks["low_contrast"] = min(1.0, float(high - low) / rules.min_contrast)
    grey = grey8.astype(np.float32) / 255.0  # (H, W) in [0, 1]
    if grey.shape[0] >= 3 and grey.shape[1] >= 3:
        lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
        checks["blurry"] = min(1.0, float(lap.var()) / rules.min_sharpness)
    return checks


def detect_language(text: str) -> str | None:
    """``"zh"`` when CJK characters make up >= 30% of the letters, ``"en"`` for Latin script, ``None`` if no letters.
    A script test, not a language model: enough to keep a corpus to its intended languages."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if cjk + latin == 0:
        return None
    return "zh" if cjk / (cjk + latin) >= 0.3 else "en"


def message_texts(messages: Any) -> list[tuple[str, Any]]:
    """(role, text) for every text part of a TRL-style message list (plain-string contents included)."""
    out = []
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        role = message.get("role") if isinstance(message, dict) else None
        if isinstance(content, str):
            out.append((role, content))
        elif isinstance(content, list):
            out += [(role, p.get("text")) for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return out


def count_placeholders(messages: Any) -> int:
    """Image placeholders: ``{"type": "image"}`` parts plus literal ``<image>`` strings in text."""
    count = 0
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image")
    return count + sum(t.count(_IMAGE_TOKEN) for _, t in message_texts(messages) if isinstance(t, str))


def text_checks(row: dict, rules: TextRules) -> dict[str, float]:
    checks: dict[str, float] = {}
    question, answer = row.get("question"), row.get("answer")
    turns = [(f"{role}_turn", text) for role, text in message_texts(row.get("messages"))]
    texts = [("question", question), ("answer", answer)] + turns
    for name, text in texts:
        if not isinstance(text, str):
            if name == "question" or name == "answer" or text is not None:
                checks[f"{name}_not_text"] = 0.0
            continue
        if "\ufffd" in text:
            checks["undecodable_text"] = 0.0
        if _CONTROL.search(text):
            checks["control_characters"] = 0.0
    if not isinstance(question, str) or not isinstance(answer, str):
        return checks
    if row.get("kind") != QuestionKind.CAPTION and len(question.strip()) < rules.min_question_chars:
        checks["question_too_short"] = 0.0
    if len(question) > rules.max_question_chars:
        checks["question_too_long"] = 0.0
    if len(answer) > rules.max_answer_chars:
        checks["answer_too_long"] = 0.0
    lang = detect_language(question or answer)
    if rules.languages and lang is not None and lang not in rules.languages:
        checks[f"language_{lang}"] = 0.0
    joined = "\n".join(t for _, t in texts if isinstance(t, str))
    lowered = joined.lower()
    if any(phrase in lowered for phrase in rules.boilerplate):
        checks["boilerplate"] = SOFT_ISSUE_SCORE
    if rules.check_identifiers:
        for kind, pattern in _IDENTIFIER_PATTERNS.items():
            if pattern.search(joined):
                checks[f"identifier_{kind}"] = 0.0
    for text in (question, answer):  # each field alone: the messages repeat them, which is not repetition
        words = text.lower().split()
        if len(words) >= 20 and len(set(words)) / len(words) < 0.3:  # 20 words: shorter texts repeat naturally
            checks["repetitive"] = SOFT_ISSUE_SCORE
    return checks


def answer_checks(row: dict, n_images: int, rules: AnswerRules) -> dict[str, float]:
    structure: dict[str, float] = {}  # merged last, so an answer problem is named first among equal scores
    messages = row.get("messages")
    if count_placeholders(messages) != n_images:
        structure["placeholder_image_mismatch"] = 0.0
    turns = message_texts(messages)
    if not turns or turns[-1][0] != "assistant" or not isinstance(turns[-1][1], str) or not turns[-1][1].strip():
        structure["no_assistant_answer"] = 0.0
    checks = _answer_content_checks(row, turns, "no_assistant_answer" in structure, rules)
    checks.update({k: v for k, v in structure.items() if k not in checks})
    return checks


def _answer_content_checks(row: dict, turns: list, no_final_turn: bool, rules: AnswerRules) -> dict[str, float]:
    checks: dict[str, float] = {}
    kind, answer, options, question = row.get("kind"), row.get("answer"), row.get("options"), row.get("question")
    if options is not None and not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        checks["options_not_a_list_of_text"] = 0.0
        options = None
    if kind not in RECORD_KINDS:
        checks["unknown_kind"] = 0.0
        return checks
    if not isinstance(answer, str) or not answer.strip():
        checks["empty_answer"] = 0.0
        return checks
    if kind == QuestionKind.YES_NO and normalize_yes_no(answer) is None:
        checks["answer_not_yes_no"] = 0.0
    if kind == QuestionKind.MULTIPLE_CHOICE:
        if not isinstance(options, list) or len(options) < 2:
            checks["too_few_options"] = 0.0
        elif answer.strip().upper() not in LETTERS[: len(options)] or len(answer.strip()) != 1:
            checks["answer_not_an_option"] = 0.0
        else:
            texts = [" ".join(str(o).lower().split()) for o in options]
            if any(not t for t in texts):
                checks["empty_option"] = SOFT_ISSUE_SCORE
            if len(set(texts)) != len(texts):
                checks["duplicate_options"] = SOFT_ISSUE_SCORE
    if isinstance(question, str):
        if _LEAK.search(question):
            checks["answer_leak"] = 0.0
        norm_answer, norm_question = " ".join(answer.lower().split()), " ".join(question.lower().split())
        # "Is it bright or dark?" offers its answer by design; only questions without alternatives can leak it.
        long_enough = len(norm_answer) >= rules.min_leak_chars
        leakable = kind == QuestionKind.OPEN and long_enough and " or " not in norm_question
        if leakable and re.search(rf"\b{re.escape(norm_answer)}\b", norm_question):
            checks["answer_in_question"] = SOFT_ISSUE_SCORE
    multi_turn = sum(1 for role, _ in turns if role == "assistant") > 1
    if kind == QuestionKind.OPEN and not multi_turn and len(answer.split()) > rules.max_open_answer_words:
        checks["open_answer_unverifiable"] = SOFT_ISSUE_SCORE
    if kind in CHOICE_KINDS and not multi_turn and turns and not no_final_turn:
        checks.update(_final_turn_agrees(turns[-1][1], answer, kind, options))
    return checks


def _final_turn_agrees(text: str, answer: str, kind: str, options) -> dict[str, float]:
    """The assistant turn must state the gold answer under the shared evaluation parser (the 'verifiable' check)."""
    try:
        match = score_answer(text, answer, kind, list(options or []) or None)
    except (ValueError, TypeError):
        return {"answer_not_parseable": SOFT_ISSUE_SCORE}
    if not match.parsed:
        return {"answer_not_parseable": SOFT_ISSUE_SCORE}
    return {} if match.correct else {"assistant_contradicts_answer": 0.0}


def _decode_images(images: Any, rules: ImageRules, hash_size: int, details: list[str]):
    """(per-image stats, failure checks); failure messages go to ``details``."""
    if images is None:
        return [], {}
    if not isinstance(images, (list, tuple)):
        return [], {"images_not_a_list": 0.0}
    stats, failures = [], {}
    for i, obj in enumerate(images):
        if obj is None:
            failures["missing_image"] = 0.0
            details.append(f"image {i}: missing (None)")
            continue
        try:
            img = load_image(obj)
            stats.append(ImageStats(image_checks(img, rules), exact_image_hash(img), dhash(img, hash_size)))
        except Exception as exc:  # noqa: BLE001 - ImageLoadError, DecompressionBombError, odd types: all undecodable
            failures["undecodable"] = 0.0
            details.append(f"image {i}: {type(exc).__name__}: {exc}"[:300])
    return stats, failures


def _dimension(checks: dict[str, float], name: str, flags: list[str]) -> float:
    flags += [f"{name}:{check}" for check, score in sorted(checks.items(), key=lambda kv: kv[1]) if score < 1.0]
    return min(checks.values(), default=1.0)


def score_sample(row: dict, image_rules: ImageRules, text_rules: TextRules, answer_rules: AnswerRules,
                 hash_size: int = 16) -> RuleResult:
    """Rule scores of one row; ``flags`` lists every imperfect check, worst first within each dimension."""
    flags: list[str] = []
    details: list[str] = []
    images = row.get("images")
    stats, failures = _decode_images(images, image_rules, hash_size, details)
    n_images = len(images) if isinstance(images, (list, tuple)) else 0
    if n_images == 0 and not failures:
        image_score = None  # text-only sample: not applicable
    else:
        per_image = [s.checks for s in stats]
        worst = {k: min(c.get(k, 1.0) for c in per_image) for c in per_image for k in c}
        image_score = _dimension({**worst, **failures}, "image_quality", flags)
    try:
        text_score = _dimension(text_checks(row, text_rules), "text_quality", flags)
    except Exception as exc:  # noqa: BLE001 - malformed structures count as bad text, never crash a batch
        text_score, flags = 0.0, flags + [f"text_quality:malformed_{type(exc).__name__}"]
        details.append(f"text: {type(exc).__name__}: {exc}"[:300])
    try:
        answer_score = _dimension(answer_checks(row, n_images, answer_rules), "answer_validity", flags)
    except Exception as exc:  # noqa: BLE001 - same reason as above
        answer_score, flags = 0.0, flags + [f"answer_validity:malformed_{type(exc).__name__}"]
        details.append(f"answer: {type(exc).__name__}: {exc}"[:300])
    return RuleResult(
        scores={"image_quality": image_score, "text_quality": text_score, "answer_validity": answer_score},
        flags=flags,
        exact_hashes=[s.exact for s in stats],
        dhashes=[s.dhash for s in stats],
        details=details,
    )
