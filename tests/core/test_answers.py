"""Answer extraction shared by evaluation and RL rewards: many surface forms, no guessing."""

import doctest

import pytest

from infimed.core import answers
from infimed.core.answers import (
    extract_choice,
    extract_final_answer,
    extract_yes_no,
    normalize_answer,
    score_answer,
    token_prf,
)

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases

OPTIONS = ["Liver", "Lung", "Heart", "Kidney"]


def test_doctests():
    result = doctest.testmod(answers)
    assert result.attempted > 5 and result.failed == 0


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "b",
        "(B)",
        "(b)",
        "[B]",
        "B.",
        "B)",
        "B:",
        "**B**",
        " B \n",
        "Answer: B",
        "answer: b",
        "The answer is B",
        "The answer is (B).",
        "The correct answer is B. Lung",
        "Final answer: B",
        "B. Lung",
        "(B) Lung",
        "b) lung",
        "Option B",
        "I choose option (b) because the image shows lungs.",
        "\\boxed{B}",
        "\\boxed{\\text{B}}",
        "so the result is \\boxed{B}.",
        "<answer>B</answer>",
        "<answer> (B) </answer>",
        "<think>It could be A or C. No.</think><answer>B</answer>",
        "<think>A?</think>\nB",
        "<answer>B</answr>",  # malformed closing tag
        "<answer>B",  # unclosed tag
        "Lung",
        "lung.",
        "The organ shown is the lung.",
        "<answer>lung</answer>",
        "答案是B",
        "选项B",
        "I think B is right.",
    ],
)
def test_choice_surface_forms(text):
    assert extract_choice(text, OPTIONS) == "B", text


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "   ",
        "A or B",
        "Either liver or lung",
        "E",  # not an option of four
        "F. something",
        "A lesion is seen in the upper lobe.",  # article, not a letter
        "I cannot tell from this image.",
        "<think>It is B</think>",  # reasoning only, no answer after it
        "<think>unfinished reasoning about B",
        "pancreas",
    ],
)
def test_choice_unparseable_is_none(text):
    assert extract_choice(text, OPTIONS) is None, text


def test_choice_prefers_specific_option_text():
    options = ["pneumonia", "bacterial pneumonia", "edema"]
    assert extract_choice("Bacterial pneumonia", options) == "B"
    assert extract_choice("pneumonia", options) == "A"


def test_choice_letter_range_follows_options():
    assert extract_choice("C", ["x", "y"]) is None
    assert extract_choice("C", ["x", "y", "z"]) == "C"
    assert extract_choice("E", None) == "E"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("yes", "yes"),
        ("Yes", "yes"),
        ("YES.", "yes"),
        ("Yes, there is a mass.", "yes"),
        ("no", "no"),
        ("No.", "no"),
        ("No, the lungs are clear.", "no"),
        ("The answer is no.", "no"),
        ("<answer>no</answer>", "no"),
        ("\\boxed{yes}", "yes"),
        ("<think>maybe no?</think><answer>yes</answer>", "yes"),
        ("是", "yes"),
        ("是的", "yes"),
        ("否", "no"),
        ("不是", "no"),
        ("有", "yes"),
        ("没有", "no"),
        ("答案是否", "no"),
        ("There is no", "no"),
    ],
)
def test_yes_no(text, expected):
    assert extract_yes_no(text) == expected, text


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "not",
        "Not present",
        "abnormal",
        "Abnormal findings",
        "normal",
        "I don't know",
        "no abnormality",  # determiner: the meaning depends on the question
        "No evidence of pneumothorax",
        "yes and no",
        "maybe",
        "<answer></answer>",
    ],
)
def test_yes_no_never_reads_no_from_substrings(text):
    assert extract_yes_no(text) is None, text


def test_final_answer_order():
    assert extract_final_answer("<think>The answer is A</think>The answer is B") == "B"
    assert extract_final_answer("<answer>x</answer> then <answer>y</answer>") == "y"
    assert extract_final_answer("\\boxed{a} and \\boxed{b}") == "b"
    assert extract_final_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_final_answer("<answer>\\boxed{C}</answer>") == "C"
    assert extract_final_answer("plain text ") == "plain text"
    assert extract_final_answer(None) == ""
    assert extract_final_answer("The answer isn't clear") == "The answer isn't clear"  # "is" must be a word
    assert extract_final_answer("Answer:\nB") == "B"


def test_normalize_answer():
    assert normalize_answer("The Left Lung!") == normalize_answer("left  lung") == "left lung"
    assert normalize_answer("3.5 cm") == "3.5 cm"
    assert normalize_answer("CT, MRI") == "ct mri"
    assert normalize_answer("Ｔ２") == "t2"  # full width -> NFKC
    assert normalize_answer("") == ""


def test_token_prf_is_precision_recall_f1_in_that_order():
    precision, recall, f1 = token_prf("left lung", "left lower lung lobe")
    assert precision == 1.0 and recall == 0.5 and f1 == pytest.approx(2 / 3)
    assert token_prf("", "") == (1.0, 1.0, 1.0)
    assert token_prf("", "lung") == (0.0, 0.0, 0.0)
    assert token_prf("肝脏", "肝")[1] == 1.0  # CJK compared per character


def test_score_answer_kinds():
    assert score_answer("(B)", "B", "multiple_choice", OPTIONS).correct
    assert score_answer("Lung", "Lung", "multiple_choice", OPTIONS).correct  # gold given as option text
    wrong = score_answer("C", "B", "multiple_choice", OPTIONS)
    assert wrong.parsed and not wrong.correct and wrong.extracted == "C"
    unparsed = score_answer("", "B", "multiple_choice", OPTIONS)
    assert not unparsed.parsed and not unparsed.correct
    assert score_answer("No.", "no", "yes_no").correct
    assert score_answer("否", "否", "yes_no").correct
    assert not score_answer("abnormal", "no", "yes_no").parsed
    assert score_answer("The Left lung.", "left lung", "open").correct
    assert not score_answer("", "left lung", "open").parsed
    assert score_answer("<answer>CT</answer>", "ct", "closed").correct


def test_score_answer_errors_name_the_problem():
    with pytest.raises(ValueError, match="kind"):
        score_answer("a", "a", "essay")
    with pytest.raises(ValueError, match="pancreas"):
        score_answer("A", "pancreas", "multiple_choice", OPTIONS)
    with pytest.raises(ValueError, match="maybe"):
        score_answer("yes", "maybe", "yes_no")


PRESENCE = "Is there a pleural effusion?"


@pytest.mark.parametrize(
    "question, text, expected",
    [
        (PRESENCE, "There is no pleural effusion.", "no"),
        ("Are there any fractures?", "There are no fractures.", "no"),
        ("Is there an abnormality?", "No abnormality", "no"),
        ("Is there an abnormality?", "No abnormality is seen.", "no"),
        ("Does the image show a mass?", "No mass is seen in the image.", "no"),
        ("Does this CT show free air?", "None", "no"),
        ("Is there cardiomegaly?", "Not enlarged", "no"),
        ("Is the heart enlarged?", "Not enlarged", "no"),
        (PRESENCE, "Normal", "no"),
        (PRESENCE, "<answer>Absent</answer>", "no"),
        ("Is a pneumothorax present?", "No pneumothorax.", "no"),
        (PRESENCE, "There is a small left pleural effusion.", "yes"),
        (PRESENCE, "Yes", "yes"),  # explicit answers keep their old reading
        (PRESENCE, "No.", "no"),
    ],
)
def test_yes_no_implicit_answers_to_presence_questions(question, text, expected):
    assert extract_yes_no(text, question=question) == expected
    gold_match = score_answer(text, expected, "yes_no", question=question)
    assert gold_match.correct and gold_match.parsed


@pytest.mark.parametrize(
    "question, text",
    [
        (PRESENCE, "I don't know."),  # a hedge holds a negation, but is no answer
        (PRESENCE, "Not sure"),
        (PRESENCE, "No idea"),
        (PRESENCE, "It cannot be determined from this image."),
        (PRESENCE, "abnormal"),  # "abnormal" is not "no"
        (PRESENCE, "Abnormal findings"),
        (PRESENCE, "No effusion, but there is a consolidation."),  # a contrast can flip the first clause
        (PRESENCE, "There may be a small effusion."),
        ("Is there a normal heart shadow?", "Normal"),  # echoes the question: not a denial
        ("Is the lung normal?", "No abnormality"),  # not a presence question: stays unparsed
        ("What organ is shown?", "There is no liver"),  # not a yes/no question
        (PRESENCE, "Not clear"),  # "not" before a hedge word
        (PRESENCE, "Not applicable"),
    ],
)
def test_yes_no_implicit_answers_never_guess(question, text):
    assert extract_yes_no(text, question=question) is None


def test_yes_no_without_question_keeps_its_old_reading():
    for text in ("There is no pleural effusion.", "No abnormality", "Normal", "Not enlarged"):
        assert extract_yes_no(text) is None
        assert not score_answer(text, "no", "yes_no").parsed


@pytest.mark.parametrize(
    "text, kind, gold, options, expected",
    [
        ("the organ is \\boxed{liver", "open", "liver", None, "liver"),  # cut off inside the box
        ("\\boxed{B", "multiple_choice", "B", ["x", "y", "z"], "B"),
        ("The answer is b because the lungs are clear.", "multiple_choice", "B", ["x", "y", "z"], "B"),
        ("The answer is no, since the costophrenic angles are sharp.", "yes_no", "no", None, "no"),
    ],
)
def test_cut_off_box_and_answer_with_reason(text, kind, gold, options, expected):
    match = score_answer(text, gold, kind, options)
    assert match.parsed and match.correct and normalize_answer(match.extracted) == normalize_answer(expected)


def test_cut_off_box_needs_the_box_at_the_end():
    assert extract_final_answer("\\boxed{\\frac{1}{2} is wrong") != "\\frac{1}{2} is wrong"
    assert extract_final_answer("the boxed region shows a mass") == "the boxed region shows a mass"
