"""The task vocabulary (`infimed.core.tasks`) and the instruction sentences (`infimed.core.prompts`)."""

import doctest

import pytest

from infimed.core import prompts, tasks
from infimed.core.tasks import (
    ANSWER_KINDS,
    CHOICE_KINDS,
    OPEN_KINDS,
    RECORD_KINDS,
    SCORED_KINDS,
    TEXT_KINDS,
    QuestionKind,
)


@pytest.mark.parametrize("module", [tasks, prompts])
def test_doctests(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_kind_groups_partition_the_kinds():
    assert set(ANSWER_KINDS) == {k.value for k in QuestionKind}
    assert set(CHOICE_KINDS) | set(TEXT_KINDS) == set(ANSWER_KINDS) and not set(CHOICE_KINDS) & set(TEXT_KINDS)
    assert set(OPEN_KINDS) <= set(TEXT_KINDS) and QuestionKind.CAPTION not in SCORED_KINDS
    assert set(RECORD_KINDS) == set(ANSWER_KINDS) - {QuestionKind.CLOSED}
    # plain strings, so messages and reports print them as before
    assert all(type(k) is str for group in (ANSWER_KINDS, RECORD_KINDS, SCORED_KINDS, OPEN_KINDS) for k in group)


def test_every_question_kind_but_caption_has_a_prompt_type():
    assert set(prompts.PROMPT_TYPE_BY_KIND) == set(ANSWER_KINDS) - {QuestionKind.CAPTION}
    assert set(prompts.PROMPT_TYPE_BY_KIND.values()) <= set(prompts.PROMPT_TYPES)
