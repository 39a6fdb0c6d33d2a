"""Served-model evaluation (`--endpoint URL --served-model NAME`): same predictions as in process, resume, retries."""

import json

import pytest

from infimed.cli import main as cli_main
from infimed.evaluation.generation import GenerationOptions
from infimed.evaluation.runner import EvalConfig, run_evaluation
from infimed.testing import tiny_model, tiny_processor
from tests.helpers.model_server import ModelServer
from tests.helpers.openai_stub import OpenAIStub, last_user_text


@pytest.fixture(scope="module")
def demo_dir(demo_data):
    return demo_data(8)


@pytest.fixture(scope="module")
def model_and_processor():
    # std 0.1: a different greedy answer per item, so "identical predictions" cannot hold by collapse
    return tiny_model(text_config={"initializer_range": 0.1}), tiny_processor()


def _config(demo_dir, out, **kw):
    return EvalConfig(benchmarks=["demo"], data_dir=str(demo_dir), output_dir=str(out), progress=False,
                      generation=GenerationOptions(batch_size=1, max_new_tokens=6), **kw)


def _records(out):
    return [json.loads(line) for line in (out / "demo" / "predictions.jsonl").read_text().splitlines()]


def test_endpoint_predictions_equal_in_process(demo_dir, model_and_processor, tmp_path):
    model, processor = model_and_processor
    local = run_evaluation(_config(demo_dir, tmp_path / "local", model="tiny"), model, processor)
    with ModelServer(model, processor) as server:
        served = run_evaluation(_config(demo_dir, tmp_path / "served", endpoint=server.base_url, served_model="tiny",
                                        endpoint_concurrency=4))
        assert len(server.requests) == 8 and all(r["temperature"] == 0.0 and r["max_tokens"] == 6
                                                 for r in server.requests)
    ours, theirs = _records(tmp_path / "local"), _records(tmp_path / "served")
    assert len({r["prediction"] for r in ours}) > 2  # the tiny model answers items differently
    for a, b in zip(ours, theirs):
        assert (a["id"], a["prompt"], a["prediction"], a["correct"], a["truncated"]) == \
               (b["id"], b["prompt"], b["prediction"], b["correct"], b["truncated"])
    assert served["benchmarks"]["demo"]["accuracy"] == local["benchmarks"]["demo"]["accuracy"]
    assert served["benchmarks"]["demo"]["truncated"] == local["benchmarks"]["demo"]["truncated"]
    assert served["endpoint"]["served_model"] == "tiny" and served["model"] == "tiny"


def test_endpoint_retries_and_resume(demo_dir, tmp_path):
    attempts: dict[str, int] = {}

    def flaky(request):  # every item fails once with 503 (retried); item texts with "2" fail for good (400)
        text = last_user_text(request)
        attempts[text] = attempts.get(text, 0) + 1
        if attempts[text] == 1:
            return 503
        return 400 if "2" in text else "yes"

    out = tmp_path / "out"
    config = _config(demo_dir, out, endpoint="http://127.0.0.1:1/v1", served_model="m")
    with OpenAIStub(flaky) as stub:
        config.endpoint = stub.base_url
        first = run_evaluation(config)
    failed = first["benchmarks"]["demo"]["errors"].get("endpoint error", 0)
    answered = sum(r["prediction"] == "yes" for r in _records(out))
    assert answered + failed == 8 and answered > 0
    with OpenAIStub(lambda request: "yes") as stub:  # resume: only the items without an answer are asked again
        config.endpoint = stub.base_url
        second = run_evaluation(config)
        assert len(stub.requests) == failed
    assert all(r["prediction"] == "yes" for r in _records(out))
    assert second["benchmarks"]["demo"]["errors"] == {}


def test_length_finish_is_counted_as_truncated(demo_dir, tmp_path):
    def cut(request):
        reason = "length" if "1" in last_user_text(request) else "stop"
        return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>the lesion"},
                                  "finish_reason": reason}]}

    with OpenAIStub(cut) as stub:
        results = run_evaluation(_config(demo_dir, tmp_path, endpoint=stub.base_url, served_model="m"))
        expected = sum("1" in last_user_text(r) for r in stub.requests)
    assert 0 < expected < 8
    assert results["benchmarks"]["demo"]["truncated"] == expected == results["protocol"]["truncated"]["demo"]
    assert sum(r["truncated"] for r in _records(tmp_path)) == expected
    assert "| truncated |" in (tmp_path / "results.md").read_text()


def test_endpoint_flags(demo_dir, tmp_path):
    with OpenAIStub(lambda request: "no") as stub:
        assert cli_main(["eval", "--endpoint", stub.base_url, "--served-model", "served-tiny", "--benchmarks", "demo",
                         "--data-dir", str(demo_dir), "--output", str(tmp_path), "--limit", "2",
                         "--endpoint-concurrency", "2", "--no-progress"]) == 0
        assert {r["model"] for r in stub.requests} == {"served-tiny"}
    with pytest.raises(ValueError, match="served-model"):
        EvalConfig(endpoint="http://localhost:8000/v1")
    with pytest.raises(ValueError, match="one of"):
        EvalConfig(endpoint="http://localhost:8000/v1", served_model="m", model="runs/tiny")
