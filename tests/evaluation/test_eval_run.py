"""Batched generation (== one item at a time), resume after a kill, `--predictions`, and the output contract."""

import json

import numpy as np
import pytest
from PIL import Image

from infimed.cli import main as cli_main
from infimed.core.endpoints import EndpointConfig
from infimed.evaluation import generation
from infimed.evaluation.generation import GenerationOptions, GenerationRequest, PredictionCache, batched_generate
from infimed.evaluation.runner import EvalConfig, run_evaluation
from infimed.testing import tiny_model, tiny_processor

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    from infimed.data.demo import DemoDataConfig, build_demo_dataset

    path = tmp_path_factory.mktemp("demo")
    build_demo_dataset(DemoDataConfig(num_samples=4, num_eval=12, seed=0)).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def model_and_processor():
    # Init std 0.1 instead of 0.02: with 0.02 greedy outputs collapse to one or two strings, so "batched == single"
    # would hold trivially; 0.1 gives a different answer per item.
    return tiny_model(text_config={"initializer_range": 0.1}), tiny_processor()


def _requests(counts):
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate(counts):
        images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]
        text = f"Question {i}: is there a lesion?" + " Look closely." * (i % 4)
        content = [{"type": "image"}] * n + [{"type": "text", "text": text}]
        out.append(GenerationRequest(str(i), [{"role": "user", "content": content}], images))
    return out


def test_batched_equals_one_at_a_time_with_mixed_image_counts(model_and_processor):
    model, processor = model_and_processor
    requests = _requests([1, 0, 2, 1, 3, 1])  # text-only and multi-image items share batches
    single, _ = batched_generate(model, processor, requests, GenerationOptions(batch_size=1, max_new_tokens=6),
                                 progress=False)
    batched, errors = batched_generate(model, processor, requests, GenerationOptions(batch_size=4, max_new_tokens=6),
                                       progress=False)
    assert batched == single and not errors
    assert len(set(batched)) > 3  # the answers differ per item, so equality is a real check


def test_max_images_and_bad_images_are_counted(model_and_processor):
    model, processor = model_and_processor
    requests = _requests([3, 1])
    requests.append(GenerationRequest("bad", [{"role": "user", "content": [{"type": "image"}, {"type": "text",
                                      "text": "x"}]}], [b"not an image"]))
    with pytest.warns(UserWarning, match="max_images"):
        out, errors = batched_generate(model, processor, requests, GenerationOptions(max_new_tokens=2, max_images=2),
                                       progress=False)
    assert errors == {"image error": 1, "images truncated": 1}
    assert out[2] is None and out[0] is not None


def test_one_bad_item_costs_only_itself(model_and_processor):
    model, processor = model_and_processor
    requests = _requests([1, 1, 1])
    good = {r.key: r for r in requests}
    # Two image parts but one image: the processor rejects the whole batch, so items are retried one by one.
    broken = requests[1].messages[0]["content"]
    requests[1] = GenerationRequest("1", [{"role": "user", "content": [{"type": "image"}, *broken]}],
                                    requests[1].images)
    # A question quoting the placeholder text would add a phantom image slot: it is removed and counted.
    quoting = [{"role": "user", "content": [{"type": "text", "text": "What is <image>?"}]}]
    requests.append(GenerationRequest("3", quoting))
    options = GenerationOptions(batch_size=4, max_new_tokens=3)
    out, errors = batched_generate(model, processor, requests, options, progress=False)
    assert out[1] is None and all(isinstance(out[i], str) for i in (0, 2, 3))
    assert errors == {"generation error (ValueError)": 1, "literal image tokens removed from text": 1}
    alone, _ = batched_generate(model, processor, [good["0"], good["2"]], options, progress=False)
    assert [out[0], out[2]] == alone


def test_cache_ignores_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    PredictionCache(path).put_many([("a", "yes"), ("b", "no")])
    with open(path, "a") as f:
        f.write('{"key": "c", "predic')  # killed mid-write
    cache = PredictionCache(path)
    assert cache.entries == {"a": "yes", "b": "no"} and cache.torn_lines == 1


def _config(demo_dir, out, **kw):
    kw.setdefault("model", "tiny-in-memory")
    return EvalConfig(benchmarks=["demo"], data_dir=str(demo_dir), output_dir=str(out), progress=False,
                      generation=GenerationOptions(batch_size=4, max_new_tokens=5), **kw)


def test_resume_after_interruption_gives_identical_results(demo_dir, model_and_processor, tmp_path, monkeypatch):
    model, processor = model_and_processor
    run_evaluation(_config(demo_dir, tmp_path / "full"), model, processor)
    expected = (tmp_path / "full" / "demo" / "predictions.jsonl").read_text()

    real, calls = generation.generate_batch, []

    class Killed(Exception):
        pass

    def dies_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Killed  # the run dies here
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_batch", dies_on_second_batch)
    with pytest.raises(Killed):
        run_evaluation(_config(demo_dir, tmp_path / "resumed"), model, processor)
    calls.clear()

    def counts(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_batch", counts)
    run_evaluation(_config(demo_dir, tmp_path / "resumed"), model, processor)
    assert len(calls) == 2  # 12 items in batches of 4: the first batch came from the cache
    assert (tmp_path / "resumed" / "demo" / "predictions.jsonl").read_text() == expected


def test_results_contract(demo_dir, model_and_processor, tmp_path):
    model, processor = model_and_processor
    results = run_evaluation(_config(demo_dir, tmp_path), model, processor)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    for key in ("model", "benchmarks", "config", "versions", "prompt", "parser", "judge", "seed", "model_index"):
        assert key in on_disk
    assert on_disk["seed"] == 42 and on_disk["judge"] is None
    metrics = on_disk["benchmarks"]["demo"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    for kind in ("yes_no", "multiple_choice", "open"):
        assert 0.0 <= metrics["by_kind"][kind]["accuracy"] <= 1.0 and 0.0 < metrics["chance"][kind] <= 1.0
    entry = on_disk["model_index"][0]
    assert entry["task"] == {"type": "visual-question-answering"} and entry["dataset"]["split"] == "eval"
    assert all(m["type"] == "accuracy" and 0.0 <= m["value"] <= 1.0 for m in entry["metrics"])
    line = json.loads((tmp_path / "demo" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"id", "prompt", "gold", "prediction", "extracted", "correct", "category"} <= set(line)
    assert (tmp_path / "results.png").stat().st_size > 1000 and "| Demo" in (tmp_path / "results.md").read_text()


def test_predictions_file_via_cli(demo_dir, tmp_path):
    import datasets

    rows = datasets.load_from_disk(str(demo_dir))["eval"]
    lines = []
    for i, (item_id, answer, kind) in enumerate(zip(rows["id"], rows["answer"], rows["kind"])):
        if i == 0:
            continue  # one missing prediction: scored as wrong and counted
        prediction = f"<think>...</think><answer>{answer}</answer>" if i % 2 else "I am not sure."
        lines.append(json.dumps({"id": item_id, "prediction": prediction}))
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert cli_main(["eval", "--predictions", str(predictions), "--benchmarks", "demo", "--data-dir", str(demo_dir),
                     "--output", str(out), "--medevalkit-compat", "--no-progress"]) == 0
    metrics = json.loads((out / "demo" / "metrics.json").read_text())
    expected_right = sum(1 for i in range(1, len(rows)) if i % 2)
    assert metrics["correct"] == expected_right and metrics["errors"] == {"missing prediction": 1}
    assert "medevalkit_compat" in metrics
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "predictions:preds.jsonl" and results["parser"]["medevalkit_compat"] is True


def test_config_errors():
    with pytest.raises(ValueError, match="--predictions"):
        EvalConfig(benchmarks=["demo"])
    with pytest.raises(ValueError, match="judge"):
        EvalConfig(benchmarks=["demo"], model="m", judge=EndpointConfig(model="x"))
    with pytest.raises(ValueError, match="batch_size"):
        GenerationOptions(batch_size=0)


def test_cli_with_a_saved_checkpoint(demo_dir, tmp_path):
    """`--model DIR` goes through AutoModelForImageTextToText / AutoProcessor, as for any Hub checkpoint."""
    model, processor = tiny_model(), tiny_processor()
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert cli_main(["eval", "--model", str(tmp_path / "ckpt"), "--benchmarks", "demo", "--data-dir", str(demo_dir),
                     "--output", str(out), "--limit", "3", "--max-new-tokens", "3", "--num-image-tokens", "16",
                     "--system-prompt", "You are a radiologist.", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["benchmarks"]["demo"]["num_items"] == 3
    assert results["config"]["generation"]["num_image_tokens"] == 16
    assert results["prompt"]["system_prompt"] == "You are a radiologist."


def test_messages_system_prompt_and_reasoning():
    from infimed.evaluation.items import EvalItem
    from infimed.evaluation.runner import build_messages

    item = EvalItem(id="1", benchmark="vqa_rad", question="Is there a mass?", answer="no", kind="yes_no",
                    prompt_type="judgement", images=["a.png", "b.png"])
    messages, prompt = build_messages(item, reasoning=True, system_prompt="Be brief.")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert [p["type"] for p in messages[1]["content"]] == ["image", "image", "text"]  # one part per image
    assert prompt.endswith('put the answer in one "\\boxed{}".') and messages[1]["content"][-1]["text"] == prompt
    demo_item = EvalItem(id="2", benchmark="demo", question="Q?", answer="yes", kind="yes_no", prompt_type="dataset",
                         messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}])
    messages, prompt = build_messages(demo_item, reasoning=False, system_prompt=None)
    assert messages == demo_item.messages and prompt == "Q?"


def test_yaml_config_with_flag_overrides(demo_dir, tmp_path):
    import datasets
    import yaml

    rows = datasets.load_from_disk(str(demo_dir))["eval"]
    predictions = tmp_path / "preds.jsonl"
    lines = [json.dumps({"id": i, "prediction": a}) for i, a in zip(rows["id"], rows["answer"])]
    predictions.write_text("\n".join(lines) + "\n")
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({
        "benchmarks": ["demo"], "data_dir": str(demo_dir), "predictions": str(predictions),
        "output_dir": str(tmp_path / "o"), "limit": 10, "generation": {"batch_size": 2},
    }))
    assert cli_main(["eval", str(config), "--limit", "5", "--no-progress"]) == 0  # the flag wins over the file
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["benchmarks"]["demo"]["num_items"] == 5 and results["benchmarks"]["demo"]["accuracy"] == 1.0
    assert results["config"]["generation"]["batch_size"] == 2
    config.write_text("benchmarks: [demo]\nbatch_size: 4\n")  # belongs under `generation`
    with pytest.raises(ValueError, match="batch_size"):
        cli_main(["eval", str(config), "--model", "m"])
