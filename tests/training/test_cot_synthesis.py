"""Chain-of-thought synthesis: scripted stand-in endpoint (exact counts), local teachers, the CLI, the cache."""

import io
import json

import datasets
import pytest
import torch
import yaml

from tests.helpers.openai_stub import OpenAIStub, last_user_text
from PIL import Image

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION
from infimed.core.llm_client import LocalChatClient, OpenAIChatClient
from infimed.testing import tiny_model, tiny_processor
from infimed.training.cot_synthesis import (
    REJECTION_REASONS,
    CoTSynthesisConfig,
    CoTTeacherConfig,
    load_cot_config,
    synthesize_cot,
)
from infimed.training.cot_prompts import reflection_step
from infimed.training.rewards import format_reward

K = 4  # candidates per sample and style; the script below gives each index a different fate


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/training/conftest.py


def _png(color):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _row(i, kind, question, answer, options=(), corrupted="", image=True):
    content = ([{"type": "image", "text": None}] if image else []) + [{"type": "text", "text": question}]
    return {
        "id": f"q{i}",
        "images": [_png((10 * i, 50, 90))] if image else [],
        "messages": [{"role": "user", "content": content},
                     {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
        "kind": kind,
        "question": question,
        "answer": answer,
        "options": list(options),
        "source": "test",
        "corrupted": corrupted,
    }


ROWS = [
    _row(0, "yes_no", "Is there a lesion in the left lung?", "yes"),
    _row(1, "multiple_choice", "Which organ is shown?", "B", options=["Liver", "Lung", "Heart"]),
    _row(2, "open", "Where is the lesion?", "left lung", image=False),
    _row(3, "caption", "Describe the image.", "A frontal chest radiograph."),
    _row(4, "yes_no", "Is the heart enlarged?", "no", corrupted="bad_image_bytes"),
    _row(5, "open", "What does the report say?", "one two three four five six seven eight nine ten eleven twelve"),
]
GOLD = {r["question"]: r for r in ROWS}
WRONG = {"yes": "no", "B": "C", "left lung": "right lung"}


@pytest.fixture
def dataset():
    features = datasets.Features({
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.List(
            {"type": datasets.Value("string"), "text": datasets.Value("string")})}),
        "kind": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "source": datasets.Value("string"),
        "corrupted": datasets.Value("string"),
    })
    return datasets.Dataset.from_list(ROWS, features=features)


def scripted_teacher(request):
    """The reply depends only on (question, style, candidate index): exact counts whatever the request order."""
    text = last_user_text(request)
    question = next(q for q in GOLD if f"Question: {q}" in text)
    gold = GOLD[question]["answer"]
    style = "reflective" if "Wait, let me check" in text else "general"
    k = request["seed"]
    if style == "general":
        return [f"<think>general {question}</think><answer>{gold}</answer>",  # kept
                f"<think>general</think><answer>{WRONG[gold]}</answer>",  # wrong_answer
                500,  # teacher_error (no retries in these tests)
                f"<think>another general path</think><answer>{gold}</answer>"][k]  # surplus
    return [f"<think>reflective {question}. Wait, let me check: yes.</think><answer>{gold}</answer>",  # kept
            f"<think>reflective {question}. Wait, let me check: yes.</think><answer>{gold}</answer>",  # duplicate
            f"The answer is {gold}.",  # bad_format
            f"<think>plain path under the reflective label</think><answer>{gold}</answer>"][k]  # not_reflective


def _config(tmp_path, base_url, **overrides):
    teacher = CoTTeacherConfig(kind="openai", model="stub-teacher", base_url=base_url, max_retries=0,
                               cache_dir=str(tmp_path / "cache"), temperature=0.7, max_tokens=64)
    kwargs = dict(dataset="unused", output_dir=str(tmp_path / "out"), teacher=teacher, num_candidates=K)
    kwargs.update(overrides)
    return CoTSynthesisConfig(**kwargs)


def _client(config):
    t = config.teacher
    return OpenAIChatClient(t.base_url, t.model, max_retries=t.max_retries, cache_dir=t.cache_dir,
                            temperature=t.temperature, max_tokens=t.max_tokens)


def test_rejection_sampling_counts_with_stand_in_endpoint(tmp_path, dataset):
    with OpenAIStub(scripted_teacher) as stub:
        config = _config(tmp_path, stub.base_url)
        output, report = synthesize_cot(dataset, _client(config), config)
        requests = list(stub.requests)

    selected = 3  # rows 0-2; 3 is a caption, 4 corrupted, 5 not information-sparse
    assert report["samples_selected"] == selected
    assert report["samples_skipped"] == {"kind_not_selected": 1, "corrupted": 1, "answer_not_sparse": 1}
    assert report["candidates"] == selected * 2 * K == len(requests)
    assert report["kept"] == selected * 2 == len(output)
    assert report["rejected"] == {"teacher_error": selected, "bad_format": selected, "wrong_answer": selected,
                                  "not_reflective": selected, "duplicate": selected, "surplus": selected}
    assert set(report["rejected"]) == set(REJECTION_REASONS)
    assert report["kept_by_style"] == {"general": selected, "reflective": selected}
    assert report["by_style"] == {
        "general": {"candidates": 12, "kept": 3,
                    "rejected": {"wrong_answer": 3, "teacher_error": 3, "surplus": 3}},
        "reflective": {"candidates": 12, "kept": 3,
                       "rejected": {"duplicate": 3, "bad_format": 3, "not_reflective": 3}},
    }
    for counts in report["by_style"].values():  # candidates = kept + rejected by reason, per style and in all
        assert counts["candidates"] == counts["kept"] + sum(counts["rejected"].values())
    assert report["candidates"] == report["kept"] + sum(report["rejected"].values())
    assert report["teacher"]["model"] == "stub-teacher" and report["teacher"]["base_url"] == stub.base_url
    shown = report["rejected_examples"]
    assert set(shown) == set(REJECTION_REASONS) and all(len(v) == selected for v in shown.values())
    assert "HTTP 500" in shown["teacher_error"][0] and "The answer is" in shown["bad_format"][0]

    # The teacher saw the image (as an inline data URL), the options, and the style's instruction.
    mc = [r for r in requests if "Which organ is shown?" in last_user_text(r)]
    assert all(any(p.get("type") == "image_url" for p in r["messages"][0]["content"]) for r in mc)
    assert all("B. Lung" in last_user_text(r) for r in mc)
    assert {r["temperature"] for r in requests} == {0.7} and {r["seed"] for r in requests} == set(range(K))

    # SFT-ready rows: user turn + the trace, images kept, provenance columns filled.
    for row in output:
        user, assistant = row["messages"]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert user["content"][-1]["text"].endswith(ANSWER_FORMAT_INSTRUCTION)
        assert sum(b["type"] == "image" for b in user["content"]) == len(row["images"])
        assert format_reward([assistant["content"][0]["text"]]) == [1.0]
        assert row["cot_style"] in ("general", "reflective") and row["cot_candidate"] == 0
        assert row["id"] == f"{row['cot_source_id']}-cot-{row['cot_style']}-0"
        assert json.loads(row["cot_teacher"])["model"] == "stub-teacher"
        assert len(row["cot_prompt_hash"]) == 64
    assert len(set(output["cot_prompt_hash"])) == len(output)
    assert "corrupted" not in output.column_names


def test_cache_makes_a_rerun_free_except_failures(tmp_path, dataset):
    with OpenAIStub(scripted_teacher) as stub:
        config = _config(tmp_path, stub.base_url)
        _, first = synthesize_cot(dataset, _client(config), config)
        before = len(stub.requests)
        _, second = synthesize_cot(dataset, _client(config), config)
        asked_again = len(stub.requests) - before
    successes = first["candidates"] - first["rejected"]["teacher_error"]
    assert second["cached_answers"] == successes
    assert asked_again == first["rejected"]["teacher_error"]  # failures are never cached: they are retried
    assert {k: second[k] for k in ("kept", "rejected")} == {k: first[k] for k in ("kept", "rejected")}


def test_keep_all_distinct_correct_traces(tmp_path, dataset):
    with OpenAIStub(scripted_teacher) as stub:
        config = _config(tmp_path, stub.base_url, max_keep_per_style=None, styles=["general"])
        output, report = synthesize_cot(dataset, _client(config), config)
    assert report["kept"] == 2 * 3 and report["rejected"]["surplus"] == 0
    assert sorted(set(output["cot_candidate"])) == [0, 3]


def test_cli_writes_dataset_and_report(tmp_path, dataset):
    from infimed.cli import main

    data_dir = tmp_path / "data"
    datasets.DatasetDict({"train": dataset}).save_to_disk(str(data_dir))
    with OpenAIStub(scripted_teacher) as stub:
        config = {
            "dataset": str(data_dir), "output_dir": str(tmp_path / "cot"), "num_candidates": K,
            "teacher": {"kind": "openai", "model": "stub-teacher", "base_url": stub.base_url, "max_retries": 0},
            "selection": {"max_samples": 2},
        }
        path = tmp_path / "cot.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["synthesize-cot", str(path)]) == 0
    report = json.loads((tmp_path / "cot" / "report.json").read_text())
    assert report["samples_selected"] == 2 and report["samples_skipped"]["over_max_samples"] == 1
    written = datasets.load_from_disk(str(tmp_path / "cot"))["train"]
    assert len(written) == report["kept"] == 4
    assert isinstance(written[0]["images"], list)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="base_url"):
        CoTTeacherConfig(kind="openai", model="m")
    with pytest.raises(ValueError, match="styles"):
        CoTSynthesisConfig(dataset="d", output_dir="o", teacher={"kind": "local", "model": "m"}, styles=["poetic"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"dataset": "d", "output_dir": "o", "teacher": {"kind": "local", "model": "m",
                                                                                   "temprature": 1.0}}))
    with pytest.raises(ValueError, match="temprature"):
        load_cot_config(path)


class _ScriptedGenerate(torch.nn.Module):
    """A local "teacher": the tiny InfiMed model's real inputs, a fixed continuation ("yes" in the right layout)."""

    def __init__(self, model, processor):
        super().__init__()
        self.model, self.config = model, model.config
        self.reply = processor.tokenizer("<think>bright spot</think><answer>yes</answer>")["input_ids"]
        self.calls = 0

    def generate(self, input_ids, pixel_values=None, attention_mask=None, **kwargs):
        self.model(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask)  # inputs are valid
        self.calls += 1
        reply = torch.tensor(self.reply).expand(input_ids.shape[0], -1)
        return torch.cat([input_ids, reply], dim=1)


def test_local_teacher_through_the_shared_client(tmp_path, dataset):
    model, processor = tiny_model(), tiny_processor()
    scripted = _ScriptedGenerate(model, processor)
    client = LocalChatClient((scripted, processor), max_new_tokens=16, batch_size=4, temperature=0.0)
    config = CoTSynthesisConfig(dataset="unused", output_dir=str(tmp_path), num_candidates=2,
                                teacher=CoTTeacherConfig(kind="local", model="tiny"))
    output, report = synthesize_cot(dataset, client, config)
    # Always "yes": right for row 0 only; greedy, so candidate 1 repeats candidate 0 of the same style.
    assert report["candidates"] == 3 * 2 * 2 and scripted.calls > 0
    assert report["kept"] == 1 and report["rejected"]["wrong_answer"] == 2 * 2 * 2
    assert report["rejected"]["duplicate"] == 1  # general k1 repeats the kept trace
    assert report["rejected"]["not_reflective"] == 2  # the same plain trace under the reflective label
    assert report["teacher"]["kind"] == "local"
    assert output[0]["cot_source_id"] == "q0"


def test_untrained_tiny_teacher_is_rejected_and_counted(tmp_path, dataset):
    # A real (random) tiny VLM writing real traces: nothing it writes passes, and every candidate is accounted for.
    client = LocalChatClient((tiny_model(), tiny_processor()), max_new_tokens=8, batch_size=8)
    config = CoTSynthesisConfig(dataset="unused", output_dir=str(tmp_path), num_candidates=1,
                                teacher=CoTTeacherConfig(kind="local", model="tiny"))
    output, report = synthesize_cot(dataset, client, config)
    assert report["candidates"] == 3 * 2 == report["kept"] + sum(report["rejected"].values())
    assert report["kept"] == len(output) == 0
    assert report["rejected"]["bad_format"] == 6 and report["rejected"]["teacher_error"] == 0


def test_output_trains_in_an_sft_stage(tmp_path, dataset):
    # "SFT-ready": the packed SFT stage takes the synthesized dataset as it is, without dropping a row.
    from infimed.training.recipe import recipe_from_dict, run_recipe

    with OpenAIStub(scripted_teacher) as stub:
        config = _config(tmp_path, stub.base_url)
        output, _ = synthesize_cot(dataset, _client(config), config)
    datasets.DatasetDict({"train": output}).save_to_disk(str(tmp_path / "cot"))
    recipe = recipe_from_dict({"model": "tiny", "output_dir": str(tmp_path / "train"), "seed": 0, "stages": [{
        "name": "cot-sft", "type": "sft", "datasets": [{"path": str(tmp_path / "cot"), "split": "train"}],
        "num_image_tokens": 16, "max_length": 512, "max_steps": 1, "gradient_checkpointing": False,
    }]})
    stage = run_recipe(recipe)["stages"]["cot-sft"]
    assert stage["samples"] == len(output) and not stage["dropped"]


def test_shipped_demo_config_parses():
    from pathlib import Path

    config = load_cot_config(Path(__file__).resolve().parents[2] / "recipes" / "cot" / "demo.yaml")
    # the demo's stand-in teacher (infimed.data.demo_teacher) is served over the OpenAI client
    assert config.teacher.kind == "openai" and config.styles == ["general", "reflective"]


@pytest.mark.parametrize("trace, step", [
    ("<think>Nodule, left upper zone. Wait, let me check the right lung: clear.</think><answer>left</answer>",
     "revisited_finding"),
    ("<think>A bright focus. Let me re-examine the image: it is round and dense.</think><answer>yes</answer>",
     "revisited_finding"),
    ("<think>Could this instead be an artefact? It persists across the field.</think><answer>yes</answer>",
     "considered_alternative"),
    ("<think>Two lesions. Alternatively, one lesion with a satellite; the gap rules that out.</think>"
     "<answer>2</answer>", "considered_alternative"),
    ("<think>I first counted two lesions; I was wrong, there are three.</think><answer>3</answer>",
     "confirmation_or_correction"),
    ("<think>The lesion is in the left lung, which confirms the first reading.</think><answer>yes</answer>",
     "confirmation_or_correction"),
])
def test_reflection_checker_finds_the_re_examination_step(trace, step):
    assert reflection_step(trace) == step


@pytest.mark.parametrize("trace", [
    "<think>The image shows a lesion in the left lung, consistent with a nodule. So yes.</think><answer>yes</answer>",
    "<think>Describe findings, relate them to the question, conclude: B.</think><answer>B</answer>",
    "<think>There is no lesion.</think><answer>no</answer> Wait, let me check.",  # reflection outside <think>
    "Wait, let me check: yes.",  # no <think> at all
])
def test_reflection_checker_rejects_plain_traces(trace):
    assert reflection_step(trace) is None


def test_reflection_check_can_be_turned_off(tmp_path, dataset):
    with OpenAIStub(scripted_teacher) as stub:
        config = _config(tmp_path, stub.base_url, check_reflection=False, styles=["reflective"])
        _, report = synthesize_cot(dataset, _client(config), config)
    assert report["rejected"]["not_reflective"] == 0 and report["rejected"]["surplus"] == 3
