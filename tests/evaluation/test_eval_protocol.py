"""Protocol presets (`--protocol`), token budgets by question kind, and truncated generations counted."""

import doctest
import json

import pytest

from infimed.cli import main as cli_main
from infimed.evaluation import generation
from infimed.evaluation.generation import GenerationOptions
from infimed.evaluation.runner import EvalConfig, run_evaluation
from infimed.testing import tiny_model, tiny_processor


@pytest.fixture(scope="module")
def demo_dir(demo_data):
    return demo_data(6)


def test_token_budget_doctests():
    result = doctest.testmod(generation)
    assert result.attempted >= 2 and result.failed == 0


def test_presets_set_the_protocol():
    medevalkit = EvalConfig(predictions="p.jsonl", protocol="medevalkit")
    assert medevalkit.medevalkit_compat and medevalkit.generation.max_images == 6
    assert EvalConfig(predictions="p.jsonl", protocol="medevalkit",
                      generation=GenerationOptions(max_images=2)).generation.max_images == 2  # an explicit value wins
    assert EvalConfig(predictions="p.jsonl", protocol="reasoning").reasoning
    default = EvalConfig(predictions="p.jsonl")
    assert not (default.reasoning or default.medevalkit_compat) and default.generation.max_new_tokens is None
    with pytest.raises(ValueError, match="protocol"):
        EvalConfig(predictions="p.jsonl", protocol="fast")


@pytest.mark.parametrize("protocol, budget", [("default", None), ("reasoning", 4096), ("medevalkit", 8192)])
def test_results_name_protocol_prompts_parser_and_judge(demo_dir, tmp_path, protocol, budget):
    from infimed.evaluation.benchmarks import load_benchmark

    items = load_benchmark("demo", data_dir=str(demo_dir)).items
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"id": i.id, "prediction": i.answer}) + "\n" for i in items))
    assert cli_main(["eval", "--predictions", str(predictions), "--benchmarks", "demo", "--data-dir", str(demo_dir),
                     "--output", str(tmp_path / "o"), "--protocol", protocol, "--no-progress"]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    kinds = {i.kind for i in items}
    expected = budget or generation.token_budget(kinds)
    assert results["protocol"]["name"] == protocol and results["protocol"]["decoding"] == "greedy"
    assert results["protocol"]["max_new_tokens"] == {"demo": expected}
    assert results["prompt"]["reasoning"] == (protocol == "reasoning")
    assert results["parser"]["medevalkit_compat"] == (protocol == "medevalkit")
    assert results["parser"]["module"] == "infimed.core.answers" and "judge" in results


def test_truncated_generations_are_counted_and_survive_resume(demo_dir, tmp_path):
    model, processor = tiny_model(text_config={"initializer_range": 0.1}), tiny_processor()
    tokenizer = processor.tokenizer
    config = EvalConfig(benchmarks=["demo"], data_dir=str(demo_dir), output_dir=str(tmp_path), model="tiny",
                        progress=False, generation=GenerationOptions(batch_size=3, max_new_tokens=3))
    first = run_evaluation(config, model, processor)
    records = [json.loads(line) for line in (tmp_path / "demo" / "predictions.jsonl").read_text().splitlines()]
    # a generation is truncated exactly when its text fills the whole 3-token budget
    expected = [len(tokenizer(r["prediction"], add_special_tokens=False)["input_ids"]) >= 3 for r in records]
    assert [r["truncated"] for r in records] == expected and any(expected)
    assert first["benchmarks"]["demo"]["truncated"] == sum(expected)
    again = run_evaluation(config, model, processor)  # every item from the cache: the counts come back with it
    assert again["benchmarks"]["demo"]["truncated"] == sum(expected)


def test_answer_format_prompts_like_cot_sft_and_counts_compliance(demo_dir, tmp_path):
    from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
    from infimed.evaluation.benchmarks import load_benchmark
    from infimed.evaluation.runner import build_messages
    from infimed.training.rewards import add_format_instruction

    items = load_benchmark("demo", data_dir=str(demo_dir)).items
    messages, prompt = build_messages(items[0], False, None, answer_format=True)
    # the same user turn CoT-SFT rows and GRPO prompts carry (training.rewards.add_format_instruction)
    assert messages[-1] == add_format_instruction(items[0].messages[-1])
    assert prompt.endswith("\n" + ANSWER_FORMAT_INSTRUCTION)
    followed = [i % 2 == 0 for i in range(len(items))]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(
        json.dumps({"id": i.id, "prediction": f"<think>x</think><answer>{i.answer}</answer>" if ok else i.answer})
        + "\n" for i, ok in zip(items, followed)))
    assert cli_main(["eval", "--predictions", str(predictions), "--benchmarks", "demo", "--data-dir", str(demo_dir),
                     "--output", str(tmp_path / "o"), "--answer-format", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "o" / "results.json").read_text())["benchmarks"]["demo"]
    assert metrics["format_compliance"]["overall"] == pytest.approx(sum(followed) / len(items))
    assert metrics["accuracy"] == 1.0  # the <answer> tag is what gets scored
    with pytest.raises(ValueError, match="choose one"):
        EvalConfig(predictions="p.jsonl", protocol="reasoning", answer_format=True)
