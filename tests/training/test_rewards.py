"""GRPO rewards: format, accuracy (shared extraction with evaluation) and the length penalty."""

import doctest
import functools

import pytest

from infimed.core import answers
from infimed.training import rewards
from infimed.training.rewards import (
    accuracy_reward,
    build_reward_funcs,
    format_reward,
    length_penalty,
)

OPTIONS = ["Pneumonia", "Pleural effusion", "Cardiomegaly", "Normal study"]


def _chat(text):
    return [{"role": "assistant", "content": text}]


def test_doctests():
    result = doctest.testmod(rewards, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>bright blob, left</think><answer>yes</answer>", 1.0),
        ("  <think>\nmulti\nline\n</think>\n\n<answer>B</answer>\n", 1.0),
        ("<think></think><answer>no</answer>", 1.0),  # empty reasoning is allowed, empty answer is not
        ("<think>x</think><answer></answer>", 0.0),
        ("<think>x</think><answer>yes</answer> Hope this helps!", 0.0),  # extra text after
        ("Sure! <think>x</think><answer>yes</answer>", 0.0),  # extra text before
        ("<think>x</think>yes", 0.0),  # no answer tags
        ("<answer>yes</answer>", 0.0),  # no think block
        ("<think>x<answer>yes</answer>", 0.0),  # unclosed think
        ("<think>x</think><answer>yes", 0.0),  # unclosed answer
        ("<think>a</think><think>b</think><answer>yes</answer>", 0.0),  # two think blocks
        ("<think>x</think><answer>yes</answer><answer>no</answer>", 0.0),  # two answers
        ("<answer>yes</answer><think>x</think>", 0.0),  # wrong order
        ("<THINK>x</THINK><ANSWER>yes</ANSWER>", 0.0),  # tags are case-sensitive, as the prompt spells them
    ],
)
def test_format_reward(text, expected):
    assert format_reward([text]) == [expected]
    assert format_reward([_chat(text)]) == [expected]


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>…</think><answer>C</answer>", "C", 1.0),
        ("<think>…</think><answer>c</answer>", "C", 1.0),  # lowercase letter
        ("<think>…</think><answer>(c)</answer>", "C", 1.0),
        ("<think>…</think><answer>C. Cardiomegaly</answer>", "C", 1.0),
        ("<think>…</think><answer>cardiomegaly</answer>", "C", 1.0),  # option text instead of the letter
        ("<think>…</think><answer>Pleural effusion</answer>", "C", 0.0),  # text of another option
        ("<think>it is not A</think><answer>C</answer>", "C", 1.0),  # letters inside think do not count
        ("<think>…</think><answer>A</answer>", "C", 0.0),
        ("The answer is C.", "C", 1.0),  # no tags: extraction still finds it (the format reward is separate)
        ("<think>…</think><answer>C</answer> or maybe A", "C", 1.0),  # extra text after the tags
        ("<think>…</think><answer>I cannot tell</answer>", "C", 0.0),  # unparsed is wrong, never a guess
        ("", "C", 0.0),
    ],
)
def test_accuracy_multiple_choice(text, gold, expected):
    assert accuracy_reward([text], answer=[gold], kind=["multiple_choice"], options=[OPTIONS]) == [expected]


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>…</think><answer>yes</answer>", "yes", 1.0),
        ("<think>…</think><answer>Yes.</answer>", "yes", 1.0),
        ("<think>…</think><answer>YES</answer>", "no", 0.0),
        ("<think>…</think><answer>No, the lungs are clear.</answer>", "no", 1.0),
        ("<think>…</think><answer>No abnormality is seen.</answer>", "no", 0.0),  # a determiner, not an answer
        ("<think>…</think><answer>abnormal</answer>", "no", 0.0),  # no substring match on "no"
        ("<think>yes? no.</think><answer>yes</answer>", "yes", 1.0),
        ("<think>…</think><answer>not sure</answer>", "yes", 0.0),
    ],
)
def test_accuracy_yes_no(text, gold, expected):
    assert accuracy_reward([_chat(text)], answer=[gold], kind=["yes_no"], options=[[]]) == [expected]


@pytest.mark.parametrize(
    "text, gold, expected",
    [
        ("<think>…</think><answer>Left lung</answer>", "left lung", 1.0),
        ("<think>…</think><answer>left  lung.</answer>", "left lung", 1.0),
        ("<think>…</think><answer>right lung</answer>", "left lung", 0.0),
        ("\\boxed{two}", "two", 1.0),
    ],
)
def test_accuracy_open(text, gold, expected):
    assert accuracy_reward([text], answer=[gold], kind=["open"], options=[[]]) == [expected]


def test_accuracy_not_applicable_is_none():
    # Captions need a judge; an empty gold answer (a corrupted sample) cannot be verified.
    out = accuracy_reward(
        ["<answer>x</answer>", "<answer>yes</answer>"],
        answer=["a report", ""],
        kind=["caption", "yes_no"],
        options=[[], []],
    )
    assert out == [None, None]


def test_accuracy_requires_gold_and_matching_lengths():
    with pytest.raises(ValueError, match="answer"):
        accuracy_reward(["<answer>yes</answer>"], kind=["yes_no"])
    with pytest.raises(ValueError, match="2 values for 1"):
        accuracy_reward(["<answer>yes</answer>"], answer=["yes", "no"], kind=["yes_no"])


def test_reward_agrees_with_evaluation_scorer():
    # The reward is the evaluation scorer, by construction: same strings, same verdicts, on a broad mix.
    cases = [
        ("yes_no", "yes", []), ("yes_no", "no", []), ("multiple_choice", "B", OPTIONS),
        ("multiple_choice", "D", OPTIONS), ("open", "left lung", []),
    ]
    texts = [
        "<think>x</think><answer>yes</answer>", "no", "No abnormality.", "The answer is (b)", "\\boxed{D}",
        "<answer>pleural effusion</answer>", "<answer>Normal study</answer>", "left lung",
        "<answer>Left Lung.</answer>",
        "I think yes", "B or C", "", "<think>A</think>",
    ]
    for kind, gold, options in cases:
        n = len(texts)
        got = accuracy_reward(texts, answer=[gold] * n, kind=[kind] * n, options=[options] * n)
        expected = [float(answers.score_answer(t, gold, kind, options or None).correct) for t in texts]
        assert got == expected, (kind, gold)
    # ... and the reward module does not carry an extractor of its own.
    assert rewards.score_answer is answers.score_answer


def test_length_penalty_tokens_and_validation():
    out = length_penalty(["x"] * 3, completion_ids=[[0] * 4, [0] * 6, [0] * 20], target_length=4, max_length=8)
    assert out == [0.0, -0.5, -1.0]
    with pytest.raises(ValueError, match="target_length"):
        length_penalty(["x"], target_length=8, max_length=8)


def test_build_reward_funcs():
    funcs = build_reward_funcs(["format", "accuracy", "length"], length_target=2, length_max=4)
    assert funcs[0] is format_reward and funcs[1] is accuracy_reward
    assert isinstance(funcs[2], functools.partial) and funcs[2](["abcd"]) == [-1.0]
    with pytest.raises(ValueError, match="Unknown reward 'fromat'"):
        build_reward_funcs(["fromat"])
