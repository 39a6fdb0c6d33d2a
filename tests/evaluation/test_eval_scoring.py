"""Scoring and metrics; every MedEvalKit pitfall absent by default and present with `compat=True`; the LLM judge
through a loopback OpenAI-compatible stand-in."""

import random

import pytest

from tests.helpers.openai_stub import OpenAIStub, last_user_text

from infimed.evaluation.compat import compat_aggregate
from infimed.evaluation.items import EvalItem
from infimed.evaluation.judge import JUDGE_PROMPT, apply_judge, judge_identity, parse_verdict
from infimed.evaluation.scoring import aggregate_metrics, chance_accuracy, score_item
from infimed.core.llm_client import OpenAIChatClient

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases


def mc(answer="A", options=("pneumonia", "fracture"), benchmark="pmc_vqa", i=0):
    return EvalItem(id=f"mc{i}", benchmark=benchmark, question="Which finding?", answer=answer, kind="multiple_choice",
                    prompt_type="multiple_choice", options=list(options),
                    option_format="paren" if benchmark.startswith("mmmu") else "dot")


def yn(answer="no", benchmark="vqa_rad", i=0, prompt_type="judgement"):
    return EvalItem(id=f"yn{i}", benchmark=benchmark, question="Is there a fracture?", answer=answer, kind="yes_no",
                    prompt_type=prompt_type)


def op(answer="left lung", benchmark="vqa_rad", i=0):
    return EvalItem(id=f"op{i}", benchmark=benchmark, question="Where is the lesion?", answer=answer, kind="open",
                    prompt_type="open_ended")


def scored(items, predictions, compat=False, seed=42):
    rng = random.Random(seed)
    return [score_item(i, p, compat=compat, rng=rng) for i, p in zip(items, predictions)]


# --- default scoring ---------------------------------------------------------------------------------------------

def test_metrics_count_unparsed_and_split_closed_open():
    items = [mc(i=0), mc(i=1), yn(i=2), op(i=3), op(answer="liver", i=4)]
    records = scored(items, ["(A)", "no idea", "No.", "The left lung.", ""])
    metrics = aggregate_metrics(records, items)
    assert metrics["num_items"] == 5 and metrics["correct"] == 3
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["unparsed"] == 2 and metrics["unparsed_rate"] == pytest.approx(0.4)
    assert metrics["closed"]["num_items"] == 3 and metrics["closed"]["accuracy"] == pytest.approx(2 / 3)
    assert metrics["open"]["num_items"] == 2 and metrics["open"]["accuracy"] == pytest.approx(0.5)
    assert metrics["by_kind"]["multiple_choice"]["unparsed"] == 1
    assert metrics["chance"]["yes_no"] == 0.5 and metrics["chance"]["multiple_choice"] == 0.5
    assert all(0.0 <= metrics["open"][name] <= 1.0 for name in ("f1", "precision", "recall"))


def test_chance_per_kind():
    items = [mc(options=("a", "b", "c", "d")), mc(i=1, options=("a", "b")), op(answer="x"), op(answer="y", i=1)]
    assert chance_accuracy(items) == {"multiple_choice": pytest.approx((0.25 + 0.5) / 2), "open": 0.5}


def test_empty_and_none_predictions_do_not_crash():
    items = [mc(), yn(), op()]
    records = scored(items, ["", None, ""], compat=True)
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["correct"] == 0 and metrics["unparsed"] == 3
    assert metrics["medevalkit_compat"]["total"]["total"] == 3


# --- each MedEvalKit pitfall: absent by default, present in compat ------------------------------------------------

def test_nearest_option_fallback():
    [rec] = scored([mc(answer="A")], ["pneumothorax, probably"], compat=True)
    assert not rec["parsed"] and not rec["correct"]  # default: unparsed and wrong
    assert rec["compat"]["fallback"] == "nearest_option" and rec["compat"]["correct"]  # compat: "closest" option wins


def test_mmmu_random_option():
    items = [mc(answer="B", options=("x-ray", "ct", "mri", "pet"), benchmark="mmmu_hm", i=i) for i in range(40)]
    records = scored(items, ["I cannot tell."] * 40, compat=True)
    assert not any(r["parsed"] or r["correct"] for r in records)
    assert all(r["compat"]["fallback"] == "random_option" for r in records)
    assert 0 < sum(r["compat"]["correct"] for r in records) < 40  # free points from guessing
    again = scored(items, ["I cannot tell."] * 40, compat=True)
    assert [r["compat"]["extracted"] for r in again] == [r["compat"]["extracted"] for r in records]  # seeded


@pytest.mark.parametrize("prediction", ["abnormal", "I don't know", "not sure", "no idea"])
def test_substring_yes_no(prediction):
    [rec] = scored([yn(answer="no")], [prediction], compat=True)
    assert not rec["correct"] and not rec["parsed"]
    assert rec["compat"]["correct"]  # "no" in "abnormal" / "know" / "not"


@pytest.mark.parametrize("prediction", ["not present", "no abnormality", "There is no fracture.", "Normal"])
def test_presence_question_decides_implicit_no(prediction):
    # The scorer is given the item's question ("Is there a fracture?"), so an implied "no" is read, and is right
    [rec] = scored([yn(answer="no")], [prediction])
    assert rec["parsed"] and rec["correct"] and rec["extracted"] == "no"
    [wrong] = scored([yn(answer="yes")], [prediction])
    assert wrong["parsed"] and not wrong["correct"]


def test_open_accuracy_divided_twice():
    items = [op(i=0), op(answer="liver", i=1)]
    records = scored(items, ["left lung", "spleen"], compat=True)
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["open"]["accuracy"] == 0.5
    assert metrics["medevalkit_compat"]["open"]["accuracy"] == 0.25


def test_precision_recall_f1_order():
    items = [op(answer="left lower lung lobe")]
    records = scored(items, ["left lung"], compat=True)
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["open"]["precision"] == 1.0 and metrics["open"]["recall"] == 0.5
    assert metrics["open"]["f1"] == pytest.approx(2 / 3)
    assert metrics["medevalkit_compat"]["open"]["precision"] == pytest.approx(2 / 3)  # the F1, reported as precision


def _with_verdicts(records, verdicts):
    for rec, verdict in zip(records, verdicts):
        rec["judge"] = {"verdict": verdict, "raw": None, "error": None}
        if rec["kind"] == "open":
            rec["correct"] = None if verdict is None else verdict == 1
    return records


def test_judge_pathvqa_closed_reset_to_zero():
    items = [yn(answer="yes", benchmark="path_vqa", i=0), op(benchmark="path_vqa", i=1)]
    records = _with_verdicts(scored(items, ["yes", "left lung"], compat=True), [None, 1])
    records[0].pop("judge")  # MedEvalKit judges only PathVQA's open items
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["closed"]["accuracy"] == 1.0
    assert metrics["medevalkit_compat"]["close"]["accuracy"] == 0.0


def test_judge_slake_closed_counted_twice():
    items = [yn(answer="no", benchmark="slake", i=i, prompt_type="close_ended") for i in range(2)]
    records = _with_verdicts(scored(items, ["no", "no"], compat=True), [1, 1])
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["closed"]["correct"] == 2 and metrics["accuracy"] == 1.0
    compat = metrics["medevalkit_compat"]
    assert compat["close"]["right"] == 4 and compat["total"]["accuracy"] == 2.0  # each item counted twice


def test_judge_failure_unjudged_not_wrong():
    items = [op(i=0), op(i=1)]
    records = _with_verdicts(scored(items, ["left lung", "right lung"], compat=True), [1, None])
    metrics = aggregate_metrics(records, items, compat=True)
    assert metrics["unjudged"] == 1 and metrics["accuracy"] == 1.0  # over the one judged item
    assert metrics["medevalkit_compat"]["total"]["accuracy"] == 0.5  # compat: a failed judgement is wrong


def test_compat_aggregate_reports_fallback_counts():
    records = scored([mc(i=0), mc(i=1)], ["A", "pneumothorax?"], compat=True)
    assert compat_aggregate(records)["fallbacks"] == {"nearest_option": 1, "random_option": 0}


# --- judge through a loopback OpenAI-compatible endpoint ----------------------------------------------------------

def test_parse_verdict():
    assert parse_verdict("<judge>0</judge> then <judge>1</judge>") == 1
    assert parse_verdict("<judge> 0 </judge>") == 0
    assert parse_verdict("1") is None and parse_verdict(None) is None


def test_judge_through_stub_endpoint(tmp_path):
    def responder(request):
        text = last_user_text(request)
        if "Candidate answer: left lung" in text:
            return "Same place. <judge>1</judge>"
        if "Candidate answer: spleen" in text:
            return "Different organ. <judge>0</judge>"
        if "Candidate answer: kidney" in text:
            return "I am not sure."  # no verdict tag
        return 500

    items = [op(i=0), op(i=1), op(i=2), op(i=3), yn(i=4)]
    records = scored(items, ["<answer>left lung</answer>", "spleen", "kidney", "pancreas", "no"])
    with OpenAIStub(responder) as stub:
        client = OpenAIChatClient(stub.base_url, "judge-stub", max_retries=1, cache_dir=tmp_path / "cache")
        client.backoff = 0.0
        counts = apply_judge(client, items, records)
        assert len(stub.requests) == 4 + 1  # four open items (yes/no is not judged) + one retry of the 500
        assert stub.requests[0]["temperature"] == 0.0
    assert counts["judged"] == 2 and counts["unjudged"] == 2
    assert [r["correct"] for r in records] == [True, False, None, None, True]
    metrics = aggregate_metrics(records, items)
    assert metrics["open"]["judge_accuracy"] == 0.5 and metrics["open"]["unjudged"] == 2
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # left lung + the yes/no item over three scored items
    identity = judge_identity(client)
    assert identity["model"] == "judge-stub" and identity["prompt"] == JUDGE_PROMPT and "1" in identity["verdict"]


def test_report_rows_and_model_index_per_language(tmp_path):
    from infimed.evaluation.benchmarks import BENCHMARKS
    from infimed.evaluation.report import markdown_table, model_index, plot_results

    items = [yn(answer=a, benchmark="slake", i=i, prompt_type="close_ended") for i, a in enumerate(["yes", "否", "no"])]
    for item, lang in zip(items, ["en", "zh", "en"]):
        item.category["lang"] = item.lang = lang
    metrics = aggregate_metrics(scored(items, ["yes", "否", "abnormal"]), items)
    assert metrics["by_lang"]["en"]["accuracy"] == 0.5 and metrics["by_lang"]["zh"]["accuracy"] == 1.0
    table = markdown_table("m", {"slake": metrics}, BENCHMARKS)
    assert "| SLAKE (en) | 2 | 50.00 |" in table and "| SLAKE (zh) | 1 | 100.00 |" in table
    [entry] = model_index("m", {"slake": metrics}, BENCHMARKS)
    names = {m["name"]: m["value"] for m in entry["metrics"]}
    assert names["SLAKE (zh) accuracy"] == 1.0 and names["SLAKE accuracy"] == pytest.approx(2 / 3)
    assert entry["dataset"] == {"name": "SLAKE", "type": "BoKelvin/SLAKE", "split": "test"}
    assert plot_results("m", {"slake": metrics}, BENCHMARKS, tmp_path / "r.png").stat().st_size > 1000
