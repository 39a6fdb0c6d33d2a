"""`check_model_folder` / `check_dataset_folder`: each way a folder would fail to load is named, and only then."""

from __future__ import annotations

import json
import shutil

import pytest

from infimed.hub import check_dataset_folder, check_model_folder
from infimed.hub.checks import MODEL_FILE_PATTERNS, select_files


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from infimed.testing import tiny_model, tiny_processor

    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    tiny_model().save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


@pytest.fixture
def checkpoint(saved_tiny, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(saved_tiny, folder)
    return folder


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_complete_checkpoint_passes(checkpoint):
    assert check_model_folder(checkpoint) == []


def only_problem(folder, *words):
    problems = check_model_folder(folder)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], problems[0]
    return problems[0]


def test_missing_auto_map(checkpoint):
    edit_json(checkpoint / "config.json", lambda c: c.pop("auto_map"))
    only_problem(checkpoint, "auto_map", "import infimed")


def test_auto_map_without_image_text_to_text(checkpoint):
    edit_json(checkpoint / "config.json", lambda c: c["auto_map"].pop("AutoModelForImageTextToText"))
    only_problem(checkpoint, "AutoModelForImageTextToText")


def test_missing_code_file_named_in_auto_map(checkpoint):
    (checkpoint / "modeling_infimed.py").unlink()
    only_problem(checkpoint, "modeling_infimed.py", "missing")


def test_missing_relative_import_of_a_code_file(checkpoint):
    (checkpoint / "image_io.py").unlink()  # imported relatively by the image processor's code
    only_problem(checkpoint, "image_io.py")


def test_code_importing_infimed(checkpoint):
    path = checkpoint / "modeling_infimed.py"
    path.write_text("from infimed.modeling import presets\n" + path.read_text())
    only_problem(checkpoint, "imports `infimed`", "line 1")


def test_pickle_weights_instead_of_safetensors(checkpoint):
    (checkpoint / "model.safetensors").rename(checkpoint / "pytorch_model.bin")
    problems = check_model_folder(checkpoint)
    assert any("pickle weights" in p and "pytorch_model.bin" in p for p in problems), problems
    assert any("no weights" in p for p in problems), problems


def test_training_leftovers_are_not_problems_and_stay_local(checkpoint):
    (checkpoint / "optimizer.pt").write_bytes(b"x")
    (checkpoint / "trainer_state.json").write_text("{}")
    (checkpoint / ".cache").mkdir()
    (checkpoint / ".cache" / "x.lock").write_text("")
    assert check_model_folder(checkpoint) == []
    selected, skipped = select_files(checkpoint, MODEL_FILE_PATTERNS)
    assert "model.safetensors" in selected and "config.json" in selected
    assert set(skipped) == {"optimizer.pt", "trainer_state.json"}


def test_truncated_safetensors(checkpoint):
    data = (checkpoint / "model.safetensors").read_bytes()
    (checkpoint / "model.safetensors").write_bytes(data[:6])
    only_problem(checkpoint, "model.safetensors", "safetensors")


def test_sharded_index_with_missing_shard(checkpoint):
    (checkpoint / "model.safetensors").rename(checkpoint / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    only_problem(checkpoint, "model-00002-of-00002.safetensors", "missing")


@pytest.mark.parametrize(
    "remove, words",
    [
        (["tokenizer_config.json"], ["tokenizer_config.json"]),
        (["tokenizer.json"], ["vocabulary"]),
        (["processor_config.json"], ["processor config"]),
        (["chat_template.jinja"], ["chat template"]),
        (["config.json"], ["config.json is missing"]),
    ],
)
def test_missing_processor_parts(checkpoint, remove, words):
    for name in remove:
        (checkpoint / name).unlink()
    problems = check_model_folder(checkpoint)
    assert problems and any(all(w in p for w in words) for p in problems), problems


def test_processor_without_auto_map_for_a_custom_model_type(checkpoint):
    for name in ("processor_config.json", "tokenizer_config.json"):
        edit_json(checkpoint / name, lambda c: (c.pop("auto_map", None),
                                                c.get("image_processor", {}).pop("auto_map", None)))
    only_problem(checkpoint, "AutoProcessor", "'infimed'")


def test_invalid_card_metadata(checkpoint):
    (checkpoint / "README.md").write_text("---\nlicense: [unclosed\n---\n# card\n")
    only_problem(checkpoint, "README.md", "metadata")


def test_not_a_folder(tmp_path):
    problems = check_model_folder(tmp_path / "nope")
    assert len(problems) == 1 and "not a directory" in problems[0]


def write_parquet(path):
    import datasets

    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"question": ["q"], "answer": ["a"]}).to_parquet(str(path))


def test_dataset_folder(tmp_path):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# d\n")
    assert check_dataset_folder(tmp_path) == []
    (tmp_path / "data" / "eval-00000-of-00001.parquet").write_bytes(b"PAR1 not really")
    problems = check_dataset_folder(tmp_path)
    assert len(problems) == 1 and "eval-00000-of-00001.parquet" in problems[0]


def test_dataset_folder_refusals(tmp_path):
    import datasets

    problems = check_dataset_folder(tmp_path)
    assert any("no parquet shards" in p for p in problems) and any("README.md" in p for p in problems)
    datasets.Dataset.from_dict({"a": [1]}).save_to_disk(str(tmp_path / "arrow"))
    assert any("save_to_disk" in p for p in check_dataset_folder(tmp_path / "arrow"))


def test_push_refuses_before_any_request(checkpoint):
    from infimed.hub import push_dataset, push_model

    (checkpoint / "chat_template.jinja").unlink()
    # A refused folder raises before huggingface_hub is asked anything, so no endpoint is needed here.
    with pytest.raises(ValueError, match="chat template"):
        push_model(checkpoint, "org/name")
    with pytest.raises(ValueError, match="no parquet shards"):
        push_dataset(checkpoint, "org/name")
    with pytest.raises(ValueError, match="not a Hub repo id"):
        push_model(checkpoint, "no-namespace")


def test_native_transformers_model_needs_no_auto_map(checkpoint):
    """InfiMed-SFT/RL-3B are plain Qwen2.5-VL checkpoints: no remote code, so no auto_map to demand."""
    edit_json(checkpoint / "config.json", lambda c: (c.pop("auto_map"), c.update(model_type="qwen2_5_vl")))
    for name in ("processor_config.json", "tokenizer_config.json"):
        edit_json(checkpoint / name, lambda c: (c.pop("auto_map", None),
                                                c.get("image_processor", {}).pop("auto_map", None)))
    assert check_model_folder(checkpoint) == []
    (checkpoint / "chat_template.jinja").unlink()
    only_problem(checkpoint, "chat template")


def test_offline_mode_is_named(checkpoint, monkeypatch, tmp_path):
    from huggingface_hub import constants

    from infimed.hub import pull, push_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        push_model(checkpoint, "org/name")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        pull("org/name", tmp_path / "out")
