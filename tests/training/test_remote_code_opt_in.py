"""No checkpoint code runs without an opt-in: recipes, the curation judge and every local endpoint (CoT teacher,
evaluation judge) refuse a folder that ships code, say where to opt in, and never import that code."""

import json

import pytest

from infimed.core.config import ConfigError
from infimed.core.endpoints import EndpointConfig, make_client
from infimed.data.curation import CurationConfig, run_curation
from infimed.training.recipe import recipe_from_dict, run_recipe


@pytest.fixture
def custom_code(tmp_path):
    """A model folder whose `auto_map` points at code that leaves a marker file when imported."""
    folder, marker = tmp_path / "custom-model", tmp_path / "code-ran"
    folder.mkdir()
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                    "from transformers import PretrainedConfig\n"
                                    "class EvilConfig(PretrainedConfig):\n    model_type = 'evil-unregistered'\n")
    auto_map = {name: f"evil.{cls}" for name, cls in [("AutoConfig", "EvilConfig"), ("AutoProcessor", "Evil"),
                                                        ("AutoModelForImageTextToText", "Evil"),
                                                        ("AutoModelForCausalLM", "Evil"), ("AutoTokenizer", "Evil")]}
    (folder / "config.json").write_text(json.dumps({"model_type": "evil-unregistered", "auto_map": auto_map}))
    (folder / "processor_config.json").write_text(json.dumps({"processor_class": "Evil",
                                                              "auto_map": {"AutoProcessor": "evil.Evil"}}))
    return folder, marker


def test_a_recipe_refuses_custom_code_and_names_the_key(custom_code, tmp_path):
    folder, marker = custom_code
    recipe = recipe_from_dict({"model": str(folder), "output_dir": str(tmp_path / "run"), "stages": [
        {"name": "sft", "datasets": [{"path": str(tmp_path / "unused")}], "max_steps": 1, "report_to": []}]})
    assert recipe.trust_remote_code is False
    with pytest.raises(ConfigError, match=r"Stage 'sft': .*custom-model ships its own model code.*"
                                          r"`trust_remote_code: true` at the top level of the recipe"):
        run_recipe(recipe)
    assert not marker.exists()


def test_the_curation_judge_refuses_custom_code(custom_code, tmp_path):
    folder, marker = custom_code
    config = CurationConfig.from_dict({"sources": [{"path": str(tmp_path / "unused")}],
                                       "judge": {"enabled": True, "kind": "local", "model": str(folder)}})
    with pytest.raises(ConfigError, match=r"`trust_remote_code: true` in the `judge:` block"):
        run_curation(config, tmp_path / "out", progress=lambda _: None)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_local_endpoint_refuses_custom_code(custom_code):
    folder, marker = custom_code
    config = EndpointConfig(kind="local", model=str(folder))  # the CoT teacher's and the judges' settings
    assert config.trust_remote_code is False
    with pytest.raises(ConfigError, match=r"set `trust_remote_code: true` in the `teacher:` block"):
        make_client(config, where="teacher")
    assert not marker.exists()


def test_the_marker_proves_the_code_would_run_with_the_opt_in(custom_code):
    folder, marker = custom_code
    with pytest.raises(Exception):  # the stand-in classes are not a working model; importing them is what counts
        make_client(EndpointConfig(kind="local", model=str(folder), trust_remote_code=True))
    assert marker.exists()
