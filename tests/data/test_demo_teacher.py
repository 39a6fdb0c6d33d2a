"""The demo's stand-in CoT teacher, spoken to over the real OpenAI client, and the synthesis it feeds."""

import random

import pytest

from infimed.core.answers import follows_answer_format, score_answer
from infimed.core.endpoints import EndpointConfig, make_client
from infimed.data.demo import DemoDataConfig, build_demo_dataset
from infimed.data.demo_teacher import DemoTeacher, TeacherAnswer, write_trace
from infimed.training.cot_prompts import reflection_step
from infimed.training.cot_synthesis import CoTSynthesisConfig, synthesize_cot


@pytest.fixture(scope="module")
def demo_train():
    return build_demo_dataset(DemoDataConfig(num_samples=120, num_eval=8, seed=3))["train"]


def _config(tmp_path, **overrides):
    settings = dict(dataset="unused", output_dir=str(tmp_path), num_candidates=4, max_keep_per_style=1,
                    teacher={"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "demo-teacher",
                             "max_retries": 0},
                    selection={"kinds": ["yes_no", "multiple_choice", "open"], "max_samples": 16})
    settings.update(overrides)
    return CoTSynthesisConfig(**settings)


def test_flawless_traces_have_the_layout_the_answer_and_a_reflection():
    rates = {"wrong_answer": 0.0, "broken_format": 0.0, "no_reflection": 0.0}
    for known in (TeacherAnswer("yes_no", "no"), TeacherAnswer("multiple_choice", "C", ("0", "1", "2", "3")),
                  TeacherAnswer("open", "left")):
        for style in ("general", "reflective"):
            trace, flaw = write_trace(known, style, random.Random(1), rates)
            assert flaw == "none" and follows_answer_format(trace)
            assert score_answer(trace, known.answer, known.kind, list(known.options) or None).correct
            assert (reflection_step(trace) is not None) == (style == "reflective")


def test_flaws_are_what_they_say(demo_train):
    known = TeacherAnswer("multiple_choice", "B", ("Small", "Medium", "Large"))
    seen = set()
    for seed in range(200):
        trace, flaw = write_trace(known, "reflective", random.Random(seed),
                                  {"wrong_answer": 0.3, "broken_format": 0.3, "no_reflection": 0.3})
        seen.add(flaw)
        if flaw == "wrong_answer":
            assert follows_answer_format(trace) and not score_answer(trace, "B", known.kind, list(known.options)).correct
        elif flaw == "broken_format":
            assert not follows_answer_format(trace)
        elif flaw == "no_reflection":
            assert follows_answer_format(trace) and reflection_step(trace) is None
    assert seen == {"none", "wrong_answer", "broken_format", "no_reflection"}


def test_synthesis_over_the_real_client_rejects_for_every_reason_and_counts_add_up(demo_train, tmp_path):
    config = _config(tmp_path)
    with DemoTeacher(demo_train, error_rates={"wrong_answer": 0.25, "broken_format": 0.2,
                                              "no_reflection": 0.3}) as teacher:
        config.teacher.base_url = teacher.base_url
        output, report = synthesize_cot(demo_train, make_client(config.teacher), config)
        served = sum(teacher.served.values())
    assert served == report["candidates"] == 16 * 2 * 4
    assert report["candidates"] == report["kept"] + sum(report["rejected"].values())
    for style, counts in report["by_style"].items():
        assert counts["candidates"] == counts["kept"] + sum(counts["rejected"].values()), style
    for reason in ("wrong_answer", "bad_format", "not_reflective"):
        assert report["rejected"][reason] > 0, reason
    assert report["rejected"]["teacher_error"] == 0  # every selected sample is known to the teacher
    assert report["by_style"]["general"]["rejected"].get("not_reflective", 0) == 0
    assert len(output) == report["kept"] > 0
    for row in output:
        trace = row["messages"][-1]["content"][0]["text"]
        assert follows_answer_format(trace)
        assert score_answer(trace, row["answer"], row["kind"], list(row["options"]) or None).correct


def test_a_sample_the_teacher_does_not_know_is_a_teacher_error(demo_train, tmp_path):
    config = _config(tmp_path, num_candidates=1, selection={"kinds": ["yes_no"], "max_samples": 2})
    with DemoTeacher(demo_train.select(range(0))) as teacher:  # knows nothing
        client = make_client(EndpointConfig(kind="openai", base_url=teacher.base_url, model="t", max_retries=0))
        _, report = synthesize_cot(demo_train, client, config)
    assert report["rejected"]["teacher_error"] == report["candidates"] == 4
    assert "unknown sample" in "".join(report["rejected_examples"]["teacher_error"])


def test_rates_outside_shares_are_refused(demo_train):
    with pytest.raises(ValueError, match="error_rates"):
        DemoTeacher(demo_train.select(range(2)), error_rates={"wrong_answer": 0.8, "broken_format": 0.5})
