"""The one config parser (`infimed.core.config`): typed YAML -> dataclasses and dataclass fields -> flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from infimed.core.config import ConfigError, ConfigParser, config_from_args, config_from_dict, load_yaml


@dataclass
class Source:
    name: str = field(metadata={"help": "Label of the source."})
    limit: int | None = field(default=None, metadata={"help": "Read at most this many rows."})


@dataclass
class Stage:
    max_steps: int = field(default=10, metadata={"help": "Optimizer steps."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})

    def __post_init__(self):
        if self.max_steps < 1:
            raise ValueError(f"`max_steps` must be >= 1, got {self.max_steps}.")


@dataclass
class Recipe:
    output_dir: str = field(default="runs", metadata={"help": "Where checkpoints go."})
    stages: list[Stage] = field(default_factory=list, metadata={"help": "Training stages."})
    sources: list[Source] = field(default_factory=list, metadata={"help": "Inputs."})
    stage: Stage = field(default_factory=Stage, metadata={"help": "One nested section."})
    options: dict[str, int] = field(default_factory=dict, metadata={"help": "Free options."})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "Speed mode."})
    streaming: bool = field(default=False, metadata={"help": "Stream the inputs."})
    progress: bool = field(default=True, metadata={"help": "Show 100% progress bars."})
    tags: list[str] = field(default_factory=list, metadata={"help": "Free tags."})
    data: Path | None = field(default=None, metadata={"help": "Data folder."})


def test_builds_nested_dataclasses_and_lists():
    recipe = config_from_dict(Recipe, {
        "stages": [{"max_steps": 3, "learning_rate": 1}], "sources": [{"name": "a", "limit": 5}],
        "stage": {"max_steps": 2}, "options": {"k": 1}, "mode": "slow", "data": "d",
    }, "recipe")
    assert recipe.stages == [Stage(max_steps=3, learning_rate=1.0)]
    assert isinstance(recipe.stages[0].learning_rate, float)
    assert recipe.sources == [Source("a", 5)] and recipe.stage == Stage(max_steps=2) and recipe.data == Path("d")


@pytest.mark.parametrize("data, message", [
    ({"stages": [{"max_steps": "3"}]}, "recipe.stages[0].max_steps: expected int, got '3' (str)"),
    ({"streaming": "yes"}, "recipe.streaming: expected bool, got 'yes' (str)"),
    ({"stages": [{"max_steps": True}]}, "recipe.stages[0].max_steps: expected int, got True (bool)"),
    ({"stages": {"max_steps": 3}}, "recipe.stages: expected list[a mapping (Stage)] (a YAML list), got {'max_steps'"),
    ({"stage": [1, 2]}, "recipe.stage: expected a mapping (Stage), got [1, 2] (list)"),
    ({"sources": [{"name": "a", "limit": "5"}]}, "recipe.sources[0].limit: expected int, got '5' (str)"),
    ({"mode": "medium"}, "recipe.mode: expected one of 'fast', 'slow', got 'medium' (str)"),
    ({"options": {"k": 1.5}}, "recipe.options.k: expected int, got 1.5 (float)"),
])
def test_wrong_types_name_the_key_the_type_and_the_value(data, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(Recipe, data, "recipe")
    assert str(info.value).startswith(message)


def test_unknown_and_missing_keys_and_post_init_errors():
    with pytest.raises(ConfigError, match=r"recipe.stages\[0\]: unknown key\(s\) \['epoch'\]; allowed: "
                                          r"\['learning_rate', 'max_steps'\]"):
        config_from_dict(Recipe, {"stages": [{"epoch": 1}]}, "recipe")
    with pytest.raises(ConfigError, match=r"recipe.sources\[0\]: missing required key\(s\) \['name'\]"):
        config_from_dict(Recipe, {"sources": [{}]}, "recipe")
    with pytest.raises(ConfigError, match=r"recipe.stages\[1\]: `max_steps` must be >= 1, got 0"):
        config_from_dict(Recipe, {"stages": [{}, {"max_steps": 0}]}, "recipe")
    assert issubclass(ConfigError, ValueError)


def test_load_yaml_wants_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"c.yaml must hold a mapping .* got \['a', 'b'\] \(list\)"):
        load_yaml(path)
    path.write_text("")
    assert load_yaml(path) == {}


def _parser() -> ConfigParser:
    parser = ConfigParser(prog="demo")
    parser.add_config_arguments(Recipe, config_file=True, sections={"stage": "stage_"},
                                aliases={"output_dir": "--output"})
    return parser


def test_flags_override_the_yaml_and_sections_are_yaml_only(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("output_dir: from-yaml\nstreaming: true\nstages: [{max_steps: 4}]\nstage: {learning_rate: 0.5}\n")
    args = _parser().parse_args([str(path), "--output", "from-flag", "--stage-max-steps", "7", "--tags", "a",
                                 "--tags", "b", "--no-progress"])
    recipe = config_from_args(Recipe, args, config_file=args.config)
    assert recipe.output_dir == "from-flag" and recipe.streaming is True and recipe.progress is False
    assert recipe.stages == [Stage(max_steps=4)] and recipe.stage == Stage(max_steps=7, learning_rate=0.5)
    assert recipe.tags == ["a", "b"]
    assert config_from_args(Recipe, _parser().parse_args([])) == Recipe()  # nothing given: the field defaults
    with pytest.raises(SystemExit):
        _parser().parse_args(["--stages", "x"])  # lists of dataclasses have no flag
    path.write_text("stage: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml.stage: unknown key\(s\) \['epochs'\]"):
        config_from_args(Recipe, _parser().parse_args([str(path)]), config_file=str(path))


def test_help_comes_from_field_metadata(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Where checkpoints go. (default: runs)" in text and "--output" in text
    assert "Show 100% progress bars." in text and "--stage-max-steps" in text and "Optimizer steps." in text
    assert "--sources" not in text and "--options" not in text
