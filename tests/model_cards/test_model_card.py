"""Model cards: rendered from checkpoint + recipe + results.json, valid Hub metadata, no empty section."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from infimed.model_cards import REQUIRED_SECTIONS, render_model_card, validate_model_card
from infimed.model_cards.facts import checkpoint_facts, format_count

RECIPE = {
    "model": "tiny",
    "output_dir": "runs/demo",
    "seed": 7,
    "stages": [
        {"name": "pretrain", "type": "sft", "datasets": [{"path": "demo-output/curated", "split": "train",
                                                          "weight": 1.0}],
         "num_image_tokens": 16, "trainable": ["projector", "llm"], "max_length": 512, "num_train_epochs": 1,
         "learning_rate": 1.0e-3},
        {"name": "sft-1", "type": "sft", "datasets": [{"hub_id": "my-org/medical-vqa", "split": "train", "count": 124},
                                                       {"path": "demo-output/general", "count": 18}],
         "num_image_tokens": 64, "trainable": ["vision", "projector", "llm"], "max_steps": 30},
        {"name": "grpo", "type": "grpo", "datasets": [{"path": "demo-output/curated", "split": "train"}],
         "num_image_tokens": 64, "trainable": ["llm"], "max_steps": 10, "lora": {"r": 8}},
    ],
}
SUMMARY = {"model": "tiny", "output_dir": "runs/demo", "seed": 7, "stages": {
    "pretrain": {"steps": 12, "seconds": 30.5, "final_loss": 2.3456, "packing_efficiency": 0.91},
    "sft-1": {"steps": 30, "seconds": 61.0, "final_loss": 1.2},
    "grpo": {"steps": 10, "seconds": 40.0, "final_reward": 0.55},
}}
RESULTS = {
    "model": "runs/demo/grpo",
    "benchmarks": {"demo": {
        "accuracy": 0.625, "num_items": 40, "unparsed": 2,
        "by_kind": {"yes_no": {"accuracy": 0.8, "num_items": 20, "chance": 0.5},
                    "multiple_choice": {"accuracy": 0.45, "num_items": 20, "chance": 0.25}},
    }},
    "config": {}, "versions": {"infimed": "0.1.0"}, "seed": 42,
    "prompt": {"name": "medevalkit", "version": 1}, "parser": {"module": "infimed.evaluation.answers", "version": 2},
    "judge": None,
    "model_index": [{
        "task": {"type": "visual-question-answering"},
        "dataset": {"name": "InfiMed demo", "type": "demo", "split": "eval"},
        "metrics": [{"type": "accuracy", "name": "demo accuracy", "value": 0.625},
                    {"type": "accuracy", "name": "demo yes_no accuracy", "value": 0.8},
                    {"type": "accuracy", "name": "demo multiple_choice accuracy", "value": 0.45}],
    }],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from infimed.testing import tiny_model, tiny_processor

    folder = tmp_path_factory.mktemp("card") / "grpo"  # named like the recipe's last stage output
    model = tiny_model()
    model.save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder, model.num_parameters()


@pytest.fixture
def run_dir(saved, tmp_path):
    """OUTPUT/<stage> layout of a recipe run: recipe_summary.json beside the stage checkpoints."""
    source, _ = saved
    for stage in ("sft-1", "grpo"):
        shutil.copytree(source, tmp_path / "run" / stage)
    (tmp_path / "run" / "recipe_summary.json").write_text(json.dumps(SUMMARY))
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    return tmp_path


def sections(text):
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_card_from_checkpoint_alone(saved):
    folder, num_parameters = saved
    card = render_model_card(folder)
    text = str(card)
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "image-text-to-text" and data["library_name"] == "transformers"
    assert data["license"] == "apache-2.0" and "medical" in data["tags"]
    assert "model-index" not in data and card.data.eval_results is None
    body = sections(text)
    assert set(REQUIRED_SECTIONS) <= set(body)
    assert all(body[name].strip() for name in REQUIRED_SECTIONS)
    assert "No evaluation results" in body["Evaluation"] and "No training recipe" in body["Training"]
    # parameter count from safetensors headers == the model's own count (tied embeddings counted once)
    facts = checkpoint_facts(folder)
    assert facts["parameters"]["total"] == num_parameters
    assert f"{format_count(num_parameters)} in total" in body["Model details"]
    assert facts["is_toy"] and "tiny test/demo model" in text
    assert "AutoModelForImageTextToText.from_pretrained(model_id, trust_remote_code=True)" in body["How to use"]
    assert "AutoProcessor.from_pretrained(model_id, trust_remote_code=True)" in body["How to use"]
    config = json.loads((folder / "config.json").read_text())
    assert f"| Visual tokens per image | {config['num_image_tokens']} " in body["Model details"]


def test_card_with_recipe_summary_and_results(run_dir):
    from huggingface_hub import ModelCard

    card = render_model_card(run_dir / "run" / "grpo", eval_results=run_dir / "results.json",
                             recipe=run_dir / "recipe.yaml", repo_id="my-org/infimed-demo",
                             base_model="Qwen/Qwen3-1.7B")
    reloaded = ModelCard(str(card))  # what the Hub parses
    data = reloaded.data.to_dict()
    assert data["datasets"] == ["my-org/medical-vqa"] and data["base_model"] == ["Qwen/Qwen3-1.7B"]
    assert {"sft", "grpo"} <= set(data["tags"])
    metrics = [m for entry in RESULTS["model_index"] for m in entry["metrics"]]
    results = reloaded.data.eval_results
    assert [(r.metric_name, r.metric_value) for r in results] == [(m["name"], m["value"]) for m in metrics]
    assert {r.dataset_type for r in results} == {"demo"} and {r.dataset_split for r in results} == {"eval"}
    assert reloaded.data.model_name == "infimed-demo"

    body = sections(str(card))
    for stage in RECIPE["stages"]:
        row = next(line for line in body["Training"].splitlines() if line.startswith(f"| {stage['name']} | "))
        assert f"| {stage['num_image_tokens']} | {', '.join(stage['trainable'])} |" in row
    assert "my-org/medical-vqa (train): 124 samples" in body["Training"]
    assert "| sft-1 | sft |" in body["Training"] and "| grpo | grpo + LoRA |" in body["Training"]
    assert "| vision, projector, llm | none |" in body["Training"]  # sft-1 unfreezes the encoder
    assert "| pretrain | 12 | 30.5 | 2.3456 | - | 91.0% |" in body["Training"]
    assert "| grpo | 10 | 40.0 | - | 0.55 | - |" in body["Training"]
    assert "| InfiMed demo | eval | demo accuracy | 62.5% |" in body["Evaluation"]
    assert "| demo | multiple_choice | 20 | 45.0% | 25.0% |" in body["Evaluation"]
    assert "demo 40 (2 unparsed)" in body["Evaluation"] and "seed 42" in body["Evaluation"]
    assert 'model_id = "my-org/infimed-demo"' in body["How to use"]


def test_stage_checkpoint_card_leaves_out_later_stages(run_dir):
    card = render_model_card(run_dir / "run" / "sft-1", recipe=run_dir / "recipe.yaml")
    training = sections(str(card))["Training"]
    assert "| sft-1 | sft |" in training and "| pretrain | sft |" in training
    assert "| grpo |" not in training and "later stages grpo did not shape it" in training
    assert "grpo" not in card.data.to_dict()["tags"]


def test_card_for_a_native_transformers_checkpoint(tmp_path):
    """A Qwen2.5-VL-style checkpoint (InfiMed-SFT/RL-3B): no remote code, no fixed visual tokens; nothing guessed."""
    import torch
    from safetensors.torch import save_file

    config = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
              "vision_config": {"model_type": "qwen2_5_vl", "depth": 2, "hidden_size": 32, "patch_size": 14},
              "text_config": {"model_type": "qwen2_5_vl_text", "num_hidden_layers": 2, "hidden_size": 32,
                              "vocab_size": 100}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({"model.visual.blocks.0.w": torch.zeros(4, 8), "model.visual.merger.w": torch.zeros(2, 3),
               "model.language_model.w": torch.zeros(10, 10), "lm_head.weight": torch.zeros(5)},
              str(tmp_path / "model.safetensors"))
    text = str(render_model_card(tmp_path))
    body = sections(text)
    assert "trust_remote_code" not in text and "None" not in text and "Visual tokens per image" not in text
    assert "vision encoder 32; projector 6; language model 100; LM head (untied) 5" in body["Model details"]
    assert "| Vision encoder | `qwen2_5_vl`, 2 layers, hidden size 32, patch 14 |" in body["Model details"]


def test_summary_without_recipe_is_still_stated(run_dir):
    training = sections(str(render_model_card(run_dir / "run" / "grpo")))["Training"]
    assert "pretrain, sft-1, grpo" in training and "--recipe" in training
    # a copy of the recipe kept in the run's output folder is picked up (cards of `push_to_hub` stage pushes)
    shutil.copy(run_dir / "recipe.yaml", run_dir / "run" / "recipe.yaml")
    training = sections(str(render_model_card(run_dir / "run" / "sft-1")))["Training"]
    assert "| sft-1 | sft |" in training and "| 30 | 61.0 | 1.2 |" in training


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace("pipeline_tag: image-text-to-text", "pipeline_tag: text-generation"), "pipeline_tag"),
        (lambda t: re.sub(r"(## Medical disclaimer\n)(.*?)(\n## )", r"\1\n\3", t, flags=re.S),
         "'## Medical disclaimer' is empty"),
        (lambda t: t.replace("## Out-of-scope use", "## Other things"), "'## Out-of-scope use' is missing"),
        (lambda t: t.replace("license: apache-2.0", "license: apache-2.0\nbase_model: ./local/folder"), "not Hub ids"),
        (lambda t: t.replace("license: apache-2.0", "license: [apache"), "does not parse"),
        (lambda t: t.replace("library_name: transformers\n", ""), "library_name"),
    ],
)
def test_validation_rejects_broken_cards(saved, mutate, message):
    folder, _ = saved
    text = str(render_model_card(folder))
    validate_model_card(text)
    broken = mutate(text)
    assert broken != text
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_model_card(broken)


def test_bad_inputs_are_named(run_dir, tmp_path):
    bad_results = tmp_path / "bad_results.json"
    bad_results.write_text(json.dumps({"model": "x"}))
    with pytest.raises(ValueError, match="bad_results.json has no `benchmarks`"):
        render_model_card(run_dir / "run" / "grpo", eval_results=bad_results)
    bad_recipe = tmp_path / "bad.yaml"
    bad_recipe.write_text("model: tiny\n")
    with pytest.raises(ValueError, match="bad.yaml is not a training recipe"):
        render_model_card(run_dir / "run" / "grpo", recipe=bad_recipe)
    with pytest.raises(ValueError, match="not Hub ids"):
        render_model_card(run_dir / "run" / "grpo", base_model="not a hub id")
    with pytest.raises(ValueError, match="no config.json"):
        render_model_card(tmp_path)


def test_card_command_writes_readme(run_dir, capsys):
    from infimed.cli import main

    folder = run_dir / "run" / "grpo"
    assert main(["card", "--model", str(folder), "--eval-results", str(run_dir / "results.json"),
                 "--recipe", str(run_dir / "recipe.yaml"), "--license", "cc-by-nc-4.0",
                 "--model-name", "infimed-demo-tiny"]) == 0
    text = (folder / "README.md").read_text()
    validate_model_card(text)
    assert "# infimed-demo-tiny\n" in text and "- name: infimed-demo-tiny" in text
    assert "license: cc-by-nc-4.0" in text and "model-index" in text
    assert main(["card", "--model", str(folder), "--eval-results", str(run_dir / "missing.json")]) == 1
    assert "Cannot read evaluation results" in capsys.readouterr().err
