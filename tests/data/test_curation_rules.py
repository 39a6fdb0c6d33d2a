"""Rule scorers (dimensions 1, 2, 5) on hand-made good and bad cases."""

import numpy as np
import pytest

from tests.helpers.curation import blurred_png, noise_png, png, row
from PIL import Image

from infimed.data.curation.config import AnswerRules, ImageRules, TextRules
from infimed.data.curation.rules import detect_language, score_sample


def _score(r, text_rules=None):
    return score_sample(r, ImageRules(), text_rules or TextRules(), AnswerRules())


def test_good_sample_scores_one():
    result = _score(row("ok", noise_png(0)))
    assert result.scores == {"image_quality": 1.0, "text_quality": 1.0, "answer_validity": 1.0}
    assert result.flags == [] and len(result.exact_hashes) == 1 and len(result.dhashes) == 1


@pytest.mark.parametrize(
    "image, flag",
    [
        (b"", "undecodable"),  # zero-byte file
        (b"\x89PNG\r\n\x1a\n" + b"garbage", "undecodable"),  # truncated / corrupt
        ("/nonexistent/scan.png", "undecodable"),  # missing file
        (png(Image.new("RGB", (64, 64), (90, 90, 90))), "near_constant"),  # blank
    ],
)
def test_bad_images_score_zero_with_reason(image, flag):
    result = _score(row("bad", image))
    assert result.scores["image_quality"] == 0.0
    assert result.flags[0] == f"image_quality:{flag}"


def test_soft_image_checks_scale():
    tiny = _score(row("tiny", noise_png(1, size=16)))
    assert tiny.scores["image_quality"] == pytest.approx(16 / 64) and "image_quality:low_resolution" in tiny.flags
    strip = np.random.default_rng(0).integers(0, 256, (64, 640, 3), dtype=np.uint8)
    wide = _score(row("wide", png(Image.fromarray(strip))))
    assert wide.scores["image_quality"] == pytest.approx(4 * 64 / 640) and "image_quality:aspect_ratio" in wide.flags
    blurred = _score(row("blur", blurred_png(2)))
    assert blurred.scores["image_quality"] < 1.0 and "image_quality:blurry" in blurred.flags
    flat = np.full((64, 64), 120, np.uint8) + np.random.default_rng(0).integers(0, 30, (64, 64)).astype(np.uint8)
    dull = _score(row("dull", png(Image.fromarray(flat))))
    assert 0 < dull.scores["image_quality"] < 1 and "image_quality:low_contrast" in dull.flags


def test_worst_image_of_a_sample_counts():
    result = _score(row("two", [noise_png(3), b""]))
    assert result.scores["image_quality"] == 0.0 and len(result.exact_hashes) == 1


def test_text_only_sample_has_no_image_score():
    result = _score(row("txt", None, question="Which organ stores bile?", answer="B", kind="multiple_choice",
                        options=["liver", "gallbladder"]))
    assert result.scores["image_quality"] is None and result.scores["answer_validity"] == 1.0


@pytest.mark.parametrize(
    "question, answer, flag, score",
    [
        ("Contact me at jane.doe@example.org, is there a lesion?", "yes", "identifier_email", 0.0),
        ("Patient MRN: 12345678. Is there a lesion?", "yes", "identifier_record_number", 0.0),
        ("Call 555-123-4567. Is there a lesion?", "yes", "identifier_phone", 0.0),
        ("Is there a lesion?\x07", "yes", "control_characters", 0.0),
        ("Is there a le\ufffdion?", "yes", "undecodable_text", 0.0),
        ("Is?", "yes", None, 1.0),
        ("Is there a lesion? Lorem ipsum dolor sit amet.", "yes", "boilerplate", 0.6),
        ("肺部有病变吗？", "yes", None, 1.0),  # zh allowed by default
    ],
)
def test_text_quality_cases(question, answer, flag, score):
    result = _score(row("t", noise_png(4), question=question, answer=answer))
    assert result.scores["text_quality"] == pytest.approx(score)
    if flag:
        assert f"text_quality:{flag}" in result.flags


def test_text_language_and_types():
    zh = row("zh", noise_png(5), question="肺部有病变吗？")
    assert _score(zh, TextRules(languages=["en"])).flags[0] == "text_quality:language_zh"
    assert detect_language("Is the lung clear?") == "en" and detect_language("1234") is None
    wrong = row("w", noise_png(5))
    wrong["question"] = 42
    result = _score(wrong)
    assert result.scores["text_quality"] == 0.0 and "text_quality:question_not_text" in result.flags
    short = row("s", noise_png(5), question="?")
    assert _score(short).flags == ["text_quality:question_too_short"]


@pytest.mark.parametrize(
    "kwargs, flag, score",
    [
        ({"answer": ""}, "empty_answer", 0.0),
        ({"answer": "maybe"}, "answer_not_yes_no", 0.0),
        ({"kind": "essay"}, "unknown_kind", 0.0),
        ({"kind": "multiple_choice", "answer": "E", "options": ["a", "b", "c", "d"]}, "answer_not_an_option", 0.0),
        ({"kind": "multiple_choice", "answer": "A", "options": ["a"]}, "too_few_options", 0.0),
        ({"kind": "multiple_choice", "answer": "A", "options": ["lung", "Lung"]}, "duplicate_options", 0.6),
        ({"n_placeholders": 2}, "placeholder_image_mismatch", 0.0),
        ({"assistant": "no"}, "assistant_contradicts_answer", 0.0),
        ({"question": "The answer is yes: is there a lesion?"}, "answer_leak", 0.0),
        ({"kind": "open", "question": "Which organ, the liver, is enlarged?", "answer": "liver"},
         "answer_in_question", 0.6),
        ({"kind": "open", "answer": " ".join(["word"] * 10 + [f"w{i}" for i in range(40)])}, "open_answer_unverifiable",
         0.6),
    ],
)
def test_answer_validity_cases(kwargs, flag, score):
    result = _score(row("a", noise_png(6), **kwargs))
    assert result.scores["answer_validity"] == pytest.approx(score)
    assert f"answer_validity:{flag}" in result.flags


def test_alternative_question_is_not_a_leak():
    result = _score(row("alt", noise_png(7), question="Is the lesion bright or dark?", answer="bright", kind="open"))
    assert result.scores["answer_validity"] == 1.0


def test_malformed_messages_do_not_crash():
    bad = row("m", noise_png(8))
    bad["messages"] = "not a list"
    result = _score(bad)
    assert result.scores["answer_validity"] == 0.0


@pytest.mark.parametrize(
    "field, value, dimension",
    [
        ("options", "A,B", "answer_validity"),
        ("images", "scan.png", "image_quality"),
        ("images", [None], "image_quality"),
        ("messages", None, "answer_validity"),
        ("answer", 5, "answer_validity"),
        ("question", None, "text_quality"),
        ("question", b"bytes", "text_quality"),
    ],
)
def test_wrong_types_are_scored_zero_not_raised(field, value, dimension):
    bad = row("typed", noise_png(9))
    bad[field] = value
    result = _score(bad)
    assert result.scores[dimension] == 0.0 and any(f.startswith(f"{dimension}:") for f in result.flags)


def test_dhash_near_for_reencoded_far_for_distinct():
    from infimed.data.curation.dedup import NearHashIndex
    from infimed.data.curation.rules import dhash
    from infimed.processing.image_io import load_image

    original = load_image(noise_png(11))
    jpeg = load_image(png(original, "JPEG", quality=90))
    resized = original.resize((128, 128))
    distinct = load_image(noise_png(12))
    index = NearHashIndex(max_hamming=8)
    index.add(dhash(original), "original")
    assert index.matches(dhash(jpeg)) == ["original"] and index.matches(dhash(resized)) == ["original"]
    assert index.matches(dhash(distinct)) == []
