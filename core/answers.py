"""Answer extraction, normalisation and scoring shared by the evaluation harness, the RL rewards, CoT rejection
sampling and the curation rules.

One implementation, so a reward and a benchmark score can never disagree about what a completion answered. It lives
in ``infimed.core`` so ``infimed.data`` (curation), ``infimed.training`` and ``infimed.evaluation`` all import it
without one of them importing another.

    >>> extract_final_answer("<think>B looks wrong</think><answer>C</answer>")
    'C'
    >>> extract_choice("The answer is (b).", ["liver", "lung", "heart"])
    'B'
    >>> extract_choice("Lung", ["liver", "lung", "heart"])
    'B'
    >>> extract_yes_no("No, the lungs are clear.")
    'no'
    >>> extract_yes_no("No abnormality is seen.") is None  # "no" is a determiner here, not an answer
    True
    >>> score_answer("\\\\boxed{A}", "A", "multiple_choice", ["x", "y"])
    AnswerMatch(extracted='A', correct=True, parsed=True)
    >>> extract_yes_no("No abnormality is seen.", question="Is there an abnormality?")  # the question decides it
    'no'

Design choices (each differs on purpose from MedEvalKit's scoring):

- nothing unparseable is mapped to "the closest" or a random option; it is reported as ``parsed=False``;
- yes/no uses word boundaries and only counts a bare "no" as an answer, never the determiner in "no effusion",
  nor "not" / "abnormal" / "normal";
- an empty prediction is simply unparsed (wrong), never an exception.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .tasks import ANSWER_KINDS, TEXT_KINDS, QuestionKind, option_letters

__all__ = [
    "ANSWER_FORMAT_INSTRUCTION",
    "AnswerMatch",
    "extract_choice",
    "extract_final_answer",
    "extract_yes_no",
    "follows_answer_format",
    "is_presence_question",
    "normalize_answer",
    "score_answer",
    "token_prf",
]

# The instruction GRPO prompts and CoT samples end with; :func:`follows_answer_format` checks exactly this layout.
ANSWER_FORMAT_INSTRUCTION = (
    "First think about the question inside <think> </think> tags, then give only the final answer inside "
    "<answer> </answer> tags."
)
# Whole completion = one think block, then one non-empty answer block, nothing else but whitespace. The tempered
# tokens `(?:(?!<tag>).)` forbid a second opening tag inside a block, so "<think><think>..." is malformed.
_FORMAT_RE = re.compile(
    r"\A\s*<think>(?:(?!</?think>).)*</think>"
    r"\s*<answer>(?:(?!</?answer>|<think>).)*\S(?:(?!</?answer>).)*</answer>\s*\Z",
    re.DOTALL,
)

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL | re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\s*\{")
# "the answer is X", "final answer: X", "Answer: X", "答案是X"; X runs to the end of the line.
_ANSWER_IS = re.compile(
    r"(?:\b(?:final\s+|correct\s+)?answer\s*(?:is\b|would\s+be\b|:|：)|答案\s*(?:是|为|：|:))\s*[:：]?\s*(.+)",
    re.IGNORECASE,
)
# A reason after the answer: "the answer is b because ..." -> "b".
_REASON = re.compile(r"\s*[,;]?\s+(?:because|since|due\s+to|as\s+shown|given\s+that)\b.*", re.IGNORECASE | re.DOTALL)
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# ASCII punctuation plus the CJK / full-width marks SLAKE-zh answers use.
_PUNCT = set(string.punctuation) | set("，。、；：？！“”‘’（）【】《》·…—")


def _boxed_contents(text: str) -> list[str]:
    r"""Contents of every ``\boxed{...}``, braces balanced (``\boxed{\frac{1}{2}}`` -> ``\frac{1}{2}``)."""
    found = []
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def _unclosed_boxed(text: str) -> str:
    r"""The tail of a last ``\boxed{`` left open at the end (a generation cut off: ``\boxed{liver``), else ""."""
    starts = list(_BOXED.finditer(text))
    if not starts:
        return ""
    tail = text[starts[-1].end():]
    if "{" in tail or "}" in tail:
        return ""  # balanced or nested content: not a plain cut-off answer
    return tail.strip().rstrip(".").strip()


def extract_final_answer(text: str | None) -> str:
    r"""The answer part of a completion, stripped of reasoning.

    Order: drop ``<think>...</think>`` (and everything before a lone ``</think>``); the last ``<answer>...</answer>``
    (an unclosed ``<answer>`` runs to the end); else the last ``\boxed{...}``; else the text after the last
    "the answer is" / "Answer:"; else the whole text. Always returns a stripped string ("" for empty input).

    >>> extract_final_answer("<think>hmm</think> The answer is: left lung.")
    'left lung.'
    >>> extract_final_answer(r"so \boxed{\text{B}}")
    '\\text{B}'
    >>> extract_final_answer("<answer>yes")
    'yes'
    >>> extract_final_answer(r"so the organ is \\boxed{liver")
    'liver'
    >>> extract_final_answer("The answer is b because the lungs are clear.")
    'b'
    """
    if not text:
        return ""
    text = _THINK_BLOCK.sub(" ", text)
    if "</think>" in text.lower():
        text = text[text.lower().rfind("</think>") + len("</think>"):]
    elif text.lstrip().lower().startswith("<think>"):
        # Unclosed think block: the model never reached an answer.
        return ""
    tags = [t.strip() for t in _ANSWER_TAG.findall(text)]
    tags = [t for t in tags if t]
    if tags:
        text = tags[-1]
    boxed = [b.strip() for b in _boxed_contents(text) if b.strip()]
    if boxed:
        return boxed[-1]
    unclosed = _unclosed_boxed(text)
    if unclosed:
        return unclosed
    said = _ANSWER_IS.findall(text)
    if said and said[-1].strip():
        answer = _REASON.sub("", said[-1]).strip()
        return answer or said[-1].strip()
    return text.strip()


def follows_answer_format(text: str) -> bool:
    """True when ``text`` is exactly ``<think>...</think><answer>...</answer>`` (whitespace around allowed).

    The answer block must be non-empty; the think block may be empty.

    >>> follows_answer_format("<think>bright</think>\\n<answer>yes</answer>")
    True
    >>> follows_answer_format("<think>x</think><answer>yes</answer> I hope this helps.")
    False
    """
    return bool(_FORMAT_RE.match(text))


def _strip_latex(text: str) -> str:
    # \text{B} / \mathrm{B} -> B, so boxed answers read like plain ones.
    return re.sub(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}", r"\1", text)


def normalize_answer(text: str | None) -> str:
    """Lowercase, NFKC, no articles / punctuation / extra spaces (SQuAD-style), keeping decimals like ``2.5``.

    >>> normalize_answer("  The Left  Lung. ")
    'left lung'
    >>> normalize_answer("2.5 cm")
    '2.5 cm'
    >>> normalize_answer("肝脏。")
    '肝脏'
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", _strip_latex(str(text))).lower()
    # Keep a '.' or ',' between two digits (2.5, 1,000); drop every other punctuation mark.
    out = []
    for i, ch in enumerate(text):
        if ch in _PUNCT:
            between_digits = 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
            out.append(ch if between_digits and ch in ".," else " ")
        else:
            out.append(ch)
    text = _ARTICLES.sub(" ", "".join(out))
    return " ".join(text.split())


# A letter on its own: "B", "(B)", "[b]", "B.", "B)", "b:", "**B**".
_BARE_LETTER = re.compile(r"^[\s*_`\"'(\[{]*([A-Za-z])[\s*_`\"')\]}.:：,]*$")
# A letter heading the answer, followed by its option text: "B. Lung", "(B) Lung", "b) lung", "B: lung".
_LEADING_LETTER = re.compile(r"^[\s*_`(\[]*([A-Za-z])\s*(?:[).\]:：]|\s-)\s*\S")
# "option B", "choice (b)", "answer: B", "选项B" anywhere; the letter must not start a longer word.
_NAMED_LETTER = re.compile(
    r"(?:\boption|\bchoice|\banswer(?:\s+is)?|选项|答案(?:是|为)?)\s*[:：]?\s*[(\[]?([A-Za-z])(?![A-Za-z])",
    re.IGNORECASE,
)
# A capital letter standing alone in free text ("I think B is right").
_LONE_CAPITAL = re.compile(r"(?<![\w'’\-])([A-Z])(?![\w'’\-])")


def _match_option_text(answer: str, options: Sequence[str]) -> int | None:
    """Index of the one option whose text the answer gives, or None if none or several match."""
    norm = normalize_answer(answer)
    if not norm:
        return None
    texts = [normalize_answer(o) for o in options]
    exact = [i for i, t in enumerate(texts) if t and t == norm]
    if len(exact) == 1:
        return exact[0]
    padded = f" {norm} "
    found = [i for i, t in enumerate(texts) if t and f" {t} " in padded]
    # "bacterial pneumonia" also contains "pneumonia": keep only matches not contained in another match.
    found = [i for i in found if not any(j != i and f" {texts[i]} " in f" {texts[j]} " for j in found)]
    return found[0] if len(found) == 1 else None


def extract_choice(text: str | None, options: Sequence[str] | None = None) -> str | None:
    r"""The option letter a completion chose, or None when it cannot be told.

    Accepts the letter in many surface forms ("B", "(B)", "b.", "Answer: B", "The answer is B", "\boxed{B}",
    "<answer>B</answer>", "B. Lung"), or the text of exactly one option. Only letters of existing options count
    (A-Z when ``options`` is empty or None). Ambiguous answers ("A or B") return None, never a guess.

    >>> extract_choice("Option (c) is right", ["a", "b", "c"])
    'C'
    >>> extract_choice("A or B", ["x", "y"]) is None
    True
    >>> extract_choice("A lesion", ["x", "y"]) is None  # the article "A" is not a letter
    True
    """
    valid = option_letters(len(options)) if options else option_letters(26)
    final = _strip_latex(extract_final_answer(text))
    if not final:
        return None

    def ok(letter: str) -> str | None:
        letter = letter.upper()
        return letter if letter in valid else None

    bare = _BARE_LETTER.match(final)
    if bare:
        return ok(bare.group(1))
    lead = _LEADING_LETTER.match(final)
    # A lowercase "a"/"i" before a word is an article or pronoun ("a. lesion" is rare; "a lesion" is not a letter).
    if lead and (lead.group(1).isupper() or lead.group(1).lower() not in "ai"):
        return ok(lead.group(1))
    named = [ok(m) for m in _NAMED_LETTER.findall(final)]
    named = [m for m in named if m]
    if named:
        return named[-1]
    if options:
        idx = _match_option_text(final, options)
        if idx is not None:
            return valid[idx]
    # Lone capitals, ignoring "A"/"I" used as an article/pronoun before a lowercase word.
    lone = set()
    for m in _LONE_CAPITAL.finditer(final):
        letter = m.group(1)
        if letter in "AI" and re.match(r"\s+(?!(?:or|and|nor)\b)[a-z]", final[m.end():]):
            continue
        if letter in valid:
            lone.add(letter)
    if len(lone) == 1:
        return lone.pop()
    return None


_YES_WORDS = {"yes", "y", "true", "correct", "是", "是的", "对", "有", "正确"}
_NO_WORDS = {"no", "n", "false", "incorrect", "否", "不是", "不", "不对", "没有", "无", "错误"}
_ZH_YES_PREFIX = ("是的", "是，", "是。", "是,", "对，", "对。")
_ZH_NO_PREFIX = ("否", "不是", "不对")


# A question asking whether something is there: "Is there X?", "Are there X?", "Does the image show X?",
# "Is X present / seen / visible?". Only for these may an implicit answer ("There is no X", "Normal") decide yes/no.
_PRESENCE_QUESTION = re.compile(
    r"^\s*(?:(?:is|are|was|were)\s+there\b"
    r"|(?:does|do|did)\s+(?:the|this|these)\s+(?:\w+\s+){0,2}?"
    r"(?:show|shows|demonstrate|reveal|contain|depict|display|have|suggest|indicate)\b"
    r"|(?:is|are|was|were)\b.*\b(?:present|seen|visible|evident|identified|noted|detected|observed)\s*\??\s*$)",
    re.IGNORECASE | re.DOTALL,
)
# Answers that refuse or hedge: never read as "no" although they hold a negation ("I don't know", "not sure").
_HEDGE = re.compile(
    r"\b(?:know|sure|certain|uncertain|unclear|unable|cannot|can't|can not|impossible|possibl[ey]|maybe|perhaps|"
    r"might|may|determine|tell|assess|idea|comment|answer|information|clear|applicable)\b",
    re.IGNORECASE,
)
# A second clause can flip the first ("no mass, but an effusion"): such answers stay unparsed.
_CONTRAST = re.compile(r"\b(?:but|however|although|though|except|whereas|yet)\b", re.IGNORECASE)
# Implicit "no" to a presence question, at the start of the answer: "There is no X", "No abnormality", "No X is
# seen", "None", "Not enlarged", "Absent", "Normal", "Unremarkable", "Without X", "Negative".
_IMPLICIT_NO = re.compile(
    r"^(?:there\s+(?:is|are|was|were)\s+no\b|there\s+(?:is|are|was|were)\s*n[o']t\b|no\s+\w"
    r"|none\b|not\s+\w|absent\b|absence\s+of\b|normal\b|unremarkable\b|without\b|negative\b"
    r"|(?:the\s+)?(?:image|scan|film|study)\s+(?:does\s+not|doesn't|shows\s+no)\b)",
    re.IGNORECASE,
)
# Implicit "yes": "There is a mass", "There are two nodules", with no negation anywhere in the answer.
_IMPLICIT_YES = re.compile(r"^there\s+(?:is|are|was|were)\s+(?!no\b|not\b|n't\b)\w", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:no|not|none|without|absent|normal|negative|never)\b|n't\b", re.IGNORECASE)


def is_presence_question(question: str | None) -> bool:
    """True for questions asking whether something is there ("Is there X?", "Does the image show X?").

    >>> is_presence_question("Is there a pleural effusion?"), is_presence_question("Is the heart enlarged?")
    (True, False)
    """
    return bool(question) and bool(_PRESENCE_QUESTION.match(question))


def _implicit_yes_no(answer: str, question: str) -> str | None:
    """Yes/no implied by an answer to a presence or property question, or None when it cannot be told safely."""
    low = unicodedata.normalize("NFKC", answer).strip().lower().strip(" \t\n.!,:;*\"'`()[]")
    if not low or _HEDGE.search(low) or _CONTRAST.search(low):
        return None
    q = question.lower()
    presence = is_presence_question(question)
    if presence and _IMPLICIT_NO.match(low):
        # "Normal" answers "is there a lesion?", but not "is there a normal ...?" (it would echo the question).
        if low.startswith("normal") and "normal" in q:
            return None
        return "no"
    # "Is the heart enlarged?" -> "Not enlarged": "not" followed by a word of the question.
    negated = re.match(r"^(?:it\s+is\s+|it's\s+|they\s+are\s+)?not\s+(\w+)", low)
    if negated and re.search(rf"\b{re.escape(negated.group(1))}\b", q):
        return "no"
    if presence and _IMPLICIT_YES.match(low) and not _NEGATION.search(low):
        return "yes"
    return None


def extract_yes_no(text: str | None, question: str | None = None) -> str | None:
    """``"yes"``, ``"no"`` or None.

    Word boundaries only ("not", "abnormal", "normal", "know" are not "no"). A leading "no" counts only as the answer
    word ("No.", "No, ...", "no" alone), not as the determiner in "no abnormality", which answers "yes" to "is the
    lung normal?" and "no" to "is there an abnormality?": without the ``question`` it stays unparsed. Chinese:
    是 / 否 / 不是 / 有 / 没有 (SLAKE zh). Both a yes and a no answer word -> None.

    With the ``question``, implicit answers are decided where the question makes them unambiguous:

    - a presence question ("Is there X?", "Are there ...", "Does the image show X?", "Is X present?") is answered
      "no" by "There is no X", "No abnormality", "None", "Not seen", "Absent", "Normal", and "yes" by "There is a
      X" (no negation anywhere);
    - "Is X <adjective>?" is answered "no" by "Not <adjective>";
    - hedges ("I don't know", "not sure", "cannot be determined") and answers with a contrast ("no mass, but ...")
      stay unparsed; "abnormal" is never "no".

    >>> extract_yes_no("Yes, there is a mass.")
    'yes'
    >>> extract_yes_no("abnormal") is None
    True
    >>> extract_yes_no("是")
    'yes'
    >>> extract_yes_no("There is no effusion.", question="Is there a pleural effusion?")
    'no'
    >>> extract_yes_no("I don't know.", question="Is there a pleural effusion?") is None
    True
    """
    final = extract_final_answer(text)
    if not final:
        return None
    clean = unicodedata.normalize("NFKC", final).strip()
    low = clean.lower().strip(" \t\n.!。！,，:;*\"'`()[]")
    if low in _YES_WORDS:
        return "yes"
    if low in _NO_WORDS:
        return "no"
    if low.startswith(_ZH_NO_PREFIX):
        return "no"
    if low.startswith(_ZH_YES_PREFIX):
        return "yes"
    # Answer words: "yes" anywhere as a word; "no" as a word not followed by a word (so not "no effusion").
    yes = bool(re.search(r"\byes\b", low))
    no = bool(re.search(r"\bno\b(?!\s*[a-z0-9\-])", low))
    if yes != no:
        return "yes" if yes else "no"
    if question and not (yes or no):
        return _implicit_yes_no(clean, question)
    return None


def token_prf(prediction: str | None, gold: str | None) -> tuple[float, float, float]:
    """Token-level ``(precision, recall, f1)`` of normalised answers (SQuAD-style bag of tokens).

    Chinese has no spaces, so CJK text is compared character by character.

    >>> token_prf("left lung", "the left lower lung")
    (1.0, 0.6666666666666666, 0.8)
    """
    pred_tokens, gold_tokens = _tokens(prediction), _tokens(gold)
    if not pred_tokens or not gold_tokens:
        same = float(pred_tokens == gold_tokens)
        return same, same, same
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0, 0.0, 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _tokens(text: str | None) -> list[str]:
    tokens = []
    for word in normalize_answer(text).split():
        if any("\u4e00" <= ch <= "\u9fff" for ch in word):
            tokens.extend(word)
        else:
            tokens.append(word)
    return tokens


@dataclass(frozen=True)
class AnswerMatch:
    """What was read from a prediction and whether it matches the gold answer.

    ``parsed`` is False when no answer of the expected kind could be read (an unparsed answer is also wrong).
    """

    extracted: str | None
    correct: bool
    parsed: bool


def _gold_letter(gold: str, options: Sequence[str] | None) -> str:
    gold = str(gold).strip()
    if len(gold) == 1 and gold.isalpha():
        return gold.upper()
    letter = extract_choice(gold, options) if options else None
    if letter is None:
        raise ValueError(
            f"Multiple-choice gold answer {gold!r} is neither an option letter nor the text of one of the options "
            f"{list(options or [])!r}; give the letter (A, B, ...) as `gold`."
        )
    return letter


def score_answer(
    prediction: str | None, gold: str, kind: str, options: Sequence[str] | None = None, question: str | None = None
) -> AnswerMatch:
    """Extract the answer of ``kind`` from ``prediction`` and compare it with ``gold``.

    - ``multiple_choice``: letter via :func:`extract_choice`; gold is a letter (or the text of one option);
    - ``yes_no``: via :func:`extract_yes_no` (given the ``question``, implicit answers to presence questions are
      read too); gold "yes"/"no" (or 是/否);
    - ``closed`` / ``open`` / ``caption``: normalised exact match of :func:`extract_final_answer`; parsed when
      non-empty. (Open answers get token F1 and the optional judge in the harness on top of this.)

    >>> score_answer("<answer>Not sure</answer>", "no", "yes_no")
    AnswerMatch(extracted=None, correct=False, parsed=False)
    """
    if kind == QuestionKind.MULTIPLE_CHOICE:
        extracted = extract_choice(prediction, options)
        return AnswerMatch(extracted, extracted is not None and extracted == _gold_letter(gold, options),
                           extracted is not None)
    if kind == QuestionKind.YES_NO:
        gold_yn = extract_yes_no(gold)
        if gold_yn is None:
            raise ValueError(f"Yes/no gold answer {gold!r} is not yes/no (or 是/否); check the benchmark's `kind`.")
        extracted = extract_yes_no(prediction, question)
        return AnswerMatch(extracted, extracted == gold_yn, extracted is not None)
    if kind in TEXT_KINDS:
        extracted = extract_final_answer(prediction)
        norm = normalize_answer(extracted)
        return AnswerMatch(extracted or None, bool(norm) and norm == normalize_answer(gold), bool(norm))
    raise ValueError(f"Unknown answer kind {kind!r}; expected one of {ANSWER_KINDS}.")
