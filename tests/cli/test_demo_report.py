"""`infimed.demo_report`: the demo's goal check per question kind, open answers included."""

import json

import pytest

from infimed.demo_report import GOAL_MARGINS, goals_for, write_summary

CHANCE = {"yes_no": 0.5, "multiple_choice": 0.28, "open": 1 / 6}


def _eval_results(out, label, accuracy):
    target = out / "eval" / label
    target.mkdir(parents=True)
    by_kind = {kind: {"accuracy": value, "chance": CHANCE[kind]} for kind, value in accuracy.items()}
    metrics = {"accuracy": sum(accuracy.values()) / len(accuracy), "by_kind": by_kind, "chance": CHANCE}
    (target / "results.json").write_text(json.dumps({"benchmarks": {"demo": metrics}}))


def test_every_scored_demo_kind_has_a_goal():
    assert set(GOAL_MARGINS) == {"yes_no", "multiple_choice", "open"}
    assert GOAL_MARGINS["open"] == pytest.approx(0.10)
    assert GOAL_MARGINS["yes_no"] == GOAL_MARGINS["multiple_choice"] == pytest.approx(0.20)


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        ({"yes_no": 0.71, "multiple_choice": 0.49, "open": 0.27}, {"yes_no": True, "multiple_choice": True, "open": True}),
        ({"yes_no": 0.80, "multiple_choice": 0.55, "open": 0.0}, {"yes_no": True, "multiple_choice": True, "open": False}),
        ({"yes_no": 0.69, "multiple_choice": 0.55}, {"yes_no": False, "multiple_choice": True, "open": False}),
    ],
)
def test_goals_compare_each_kind_with_its_own_margin(final, expected):
    assert goals_for(final, CHANCE) == expected


def test_a_forgotten_open_answer_fails_the_demo(tmp_path, capsys):
    _eval_results(tmp_path, "init", {"yes_no": 0.0, "multiple_choice": 0.0, "open": 0.0})
    _eval_results(tmp_path, "sft-3", {"yes_no": 0.8, "multiple_choice": 0.6, "open": 0.0})
    results = write_summary(tmp_path, ["init", "sft-3"], tmp_path / "train", {"data": 1.0})
    assert results["goals"] == {"yes_no": True, "multiple_choice": True, "open": False}
    assert results["goals_met"] is False
    assert json.loads((tmp_path / "results.json").read_text())["goals_met"] is False
    assert "NOT met" in capsys.readouterr().out


def test_open_answers_above_their_margin_meet_the_goal(tmp_path):
    _eval_results(tmp_path, "sft-3", {"yes_no": 0.8, "multiple_choice": 0.6, "open": 0.4})
    results = write_summary(tmp_path, ["sft-3"], tmp_path / "train", {})
    assert results["goals_met"] is True
    assert "open +0.10" in results["goal"]
    assert "| sft-3 |" in (tmp_path / "summary.md").read_text()
