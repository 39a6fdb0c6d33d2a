"""The five quality dimensions InfiMed scores every training sample on.

InfiMed-Foundation reports "LLM filtering and human evaluation" along five quality dimensions without naming them;
these are ours. Every score is a float in [0, 1] (1 = no problem found) saved as a column ``score_<name>``; a sample
is kept when each enabled dimension's score is >= its threshold in the curation config. ``None`` means "not
applicable" (image checks on a text-only sample) or "not scored" (dimension disabled, or the judge failed: the
sample is then dropped as ``unscored:<name>`` unless the config keeps it flagged; either way it is counted).

=====  ====================  ======  ===============================================================================
 #     name                  scorer  what lowers the score
=====  ====================  ======  ===============================================================================
 1     image_quality         rules   undecodable/missing/zero-byte file (0); short side under ``min_side`` (ratio);
                                     aspect ratio over ``max_aspect``; blank or near-constant (0); low contrast;
                                     blur (low Laplacian variance). Worst image of the sample counts.
 2     text_quality          rules   non-text or undecodable fields (0); question/answer outside length bounds;
                                     language not in ``languages``; boilerplate phrases; personal identifiers
                                     (e-mail, phone, ID/MRN numbers: 0); heavy repetition.
 3     alignment             model   image and text do not belong together (rubric 1-5, mapped (s - 1) / 4).
 4     medical_relevance     model   not medical, or little medical knowledge per token (rubric 1-5, mapped).
 5     answer_validity       rules   empty answer (0); answer not valid for the kind (not yes/no; not an option
                                     letter) (0); image placeholders != images (0); no final assistant turn (0);
                                     answer leaked in the question; open answer too long to verify.
=====  ====================  ======  ===============================================================================

Rule checks return a score per check; the dimension score is the minimum over its checks (a sample is as good as
its worst problem) and every check below 1 adds a named flag (e.g. ``image_quality:low_contrast``) to the
``quality_flags`` column, so an auditor sees why.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Dimension", "DIMENSIONS", "DIMENSION_NAMES", "RULE_DIMENSIONS", "MODEL_DIMENSIONS", "score_column",
           "rubric_to_unit", "SOFT_ISSUE_SCORE"]

# Score given by a "soft" rule problem (boilerplate, leakage hint, repetition): below a perfect 1 so it shows in
# histograms and audits, above the default 0.5 threshold so it flags without dropping.
SOFT_ISSUE_SCORE = 0.6


@dataclass(frozen=True)
class Dimension:
    index: int
    name: str
    scorer: str  # "rules" or "model"
    summary: str


DIMENSIONS = (
    Dimension(1, "image_quality", "rules",
              "decodable, adequate resolution and aspect ratio, not blank, contrast, sharp"),
    Dimension(2, "text_quality", "rules", "well-formed text, length bounds, language, no boilerplate, no identifiers"),
    Dimension(3, "alignment", "model", "the text is about what the image shows"),
    Dimension(4, "medical_relevance", "model", "medical content and knowledge density"),
    Dimension(5, "answer_validity", "rules", "answer consistent with the question kind, non-empty, not leaked"),
)
DIMENSION_NAMES = tuple(d.name for d in DIMENSIONS)
RULE_DIMENSIONS = tuple(d.name for d in DIMENSIONS if d.scorer == "rules")
MODEL_DIMENSIONS = tuple(d.name for d in DIMENSIONS if d.scorer == "model")


def score_column(name: str) -> str:
    """Column holding a dimension's score, e.g. ``score_image_quality``."""
    return f"score_{name}"


def rubric_to_unit(value: int) -> float:
    """Judge rubric 1..5 -> [0, 1]: 1 -> 0.0, 3 -> 0.5, 5 -> 1.0 (so the default 0.5 threshold means "at least 3")."""
    return (value - 1) / 4
