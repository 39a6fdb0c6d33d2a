"""The scorer as an `evaluate` metric: loads offline from its local path and gives the harness's numbers."""

import json

import evaluate
import pytest

from infimed.evaluation.benchmarks import load_benchmark
from infimed.evaluation.metric import METRIC_PATH
from infimed.evaluation.runner import EvalConfig, metric_inputs, run_evaluation


@pytest.fixture(scope="module")
def demo_dir(demo_data):
    return demo_data(16)


def _predictions(items):
    # right, wrong, unreadable and implicit answers in turn, so accuracy, correct and unparsed all carry information
    out = []
    for i, item in enumerate(items):
        wrong = "C" if item.kind == "multiple_choice" and item.answer != "C" else "spleen"
        out.append([item.answer, f"The answer is {item.answer} because it is visible.", wrong, "I don't know"][i % 4])
    return out


def test_metric_module_is_an_evaluate_metric():
    metric = evaluate.load(METRIC_PATH)
    assert isinstance(metric, evaluate.Metric)
    assert "2505.23867" in metric.citation and "unparsed" in metric.description
    assert set(metric.features) == {"predictions", "references"}


@pytest.mark.parametrize("compat", [False, True])
def test_evaluate_load_gives_the_harness_numbers(demo_dir, tmp_path, monkeypatch, compat):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items = load_benchmark("demo", data_dir=str(demo_dir)).items
    predictions = _predictions(items)
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i.id, "prediction": p}) + "\n" for i, p in zip(items, predictions)))
    results = run_evaluation(EvalConfig(predictions=str(path), benchmarks=["demo"], data_dir=str(demo_dir),
                                        output_dir=str(tmp_path / "o"), medevalkit_compat=compat, progress=False))
    harness = results["benchmarks"]["demo"]
    records = [json.loads(line) for line in (tmp_path / "o" / "demo" / "predictions.jsonl").read_text().splitlines()]

    metric = evaluate.load(METRIC_PATH)  # the local path: no Hub access
    got = metric.compute(**metric_inputs(items, predictions, compat=compat), seed=42)
    if compat:
        assert got["accuracy"] == harness["medevalkit_compat"]["total"]["accuracy"]
        assert got["scores"] == [int(r["compat"]["correct"]) for r in records]
    else:
        assert (got["accuracy"], got["correct"], got["unparsed"]) == \
               (harness["accuracy"], harness["correct"], harness["unparsed"])
        assert got["scores"] == [int(r["correct"]) for r in records]
        assert 0 < got["correct"] < len(items) and got["unparsed"] > 0


@pytest.mark.slow
def test_push_metric_publishes_a_space_evaluate_loads(tmp_path):
    from tests.helpers.hub_server import HubServer
    from tests.hub.test_hub import FAKE_TOKEN, client_env, run_cli

    repo = "infimed-test/infimed_medvqa"
    with HubServer(token=FAKE_TOKEN) as hub:
        env = client_env(hub, tmp_path / "home")
        codes, log = run_cli(env, ["push-metric", "--repo-id", repo], cwd=tmp_path)
        assert codes == [0], log
        files = hub.files(repo, "space")
        assert {"infimed_medvqa.py", "README.md", "app.py", "requirements.txt"} <= set(files)
        assert files["infimed_medvqa.py"] == open(METRIC_PATH, "rb").read()
        # a Hub user loads it by repo id and gets the same scores as the local module
        code = ("import evaluate, json; m = evaluate.load(%r); print('SCORES', json.dumps(m.compute("
                "predictions=['There is no effusion.', '(b)'], references=['no', 'B'], kinds=['yes_no', "
                "'multiple_choice'], options=[[], ['x', 'y']], questions=['Is there an effusion?', ''])))" % repo)
        import subprocess
        import sys

        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert "SCORES" in proc.stdout, proc.stdout + proc.stderr[-3000:]
        scores = json.loads(proc.stdout.split("SCORES", 1)[1])
        assert scores["scores"] == [1, 1] and scores["accuracy"] == 1.0
