"""A user error ends `infimed` with one `error:` line and status 2; `--debug` / INFIMED_DEBUG=1 add the traceback."""

import os
import subprocess
import sys

import pytest

from infimed.cli import main as cli_main
from infimed.core.config import ConfigError
from infimed.core.errors import InfiMedError


def _run(argv, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["infimed", *argv])  # as the console script calls it: main() reads sys.argv
    status = cli_main()
    return status, capsys.readouterr().err


def test_console_script_prints_one_line(tmp_path):
    missing = tmp_path / "evl.yaml"
    env = {k: v for k, v in os.environ.items() if k != "INFIMED_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "infimed.cli", "eval", str(missing)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        f"error: Cannot read config file {missing}: [Errno 2] No such file or directory: '{missing}'"
    ]


def test_argv_given_raises_the_typed_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read config file"):
        cli_main(["eval", str(tmp_path / "evl.yaml")])


def test_typo_in_config_path_is_one_line(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "evl.yaml"
    status, err = _run(["eval", str(missing)], capsys, monkeypatch)
    assert status == 2
    assert err.splitlines() == [f"error: Cannot read config file {missing}: [Errno 2] No such file or directory: "
                                f"'{missing}'"]


def test_bad_yaml_value_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("INFIMED_DEBUG", raising=False)
    config = tmp_path / "eval.yaml"
    config.write_text("benchmarks: [demo]\nlimit: five\n")
    status, err = _run(["eval", str(config)], capsys, monkeypatch)
    assert status == 2 and "Traceback" not in err
    assert err.splitlines() == [f"error: {config}.limit: expected int, got 'five' (str)"]


def test_yaml_syntax_error_message_is_joined_on_one_line(tmp_path, capsys, monkeypatch):
    config = tmp_path / "eval.yaml"
    config.write_text("benchmarks: [demo\nlimit: 5\n")
    status, err = _run(["eval", str(config)], capsys, monkeypatch)
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith(f"error: {config} is not valid YAML")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch, how):
    config = tmp_path / "eval.yaml"
    config.write_text("limit: five\n")
    argv = ["eval", str(config)]
    if how == "flag":
        argv.insert(0, "--debug")
    else:
        monkeypatch.setenv("INFIMED_DEBUG", "1")
    status, err = _run(argv, capsys, monkeypatch)
    assert status == 2 and err.startswith("Traceback (most recent call last):")
    assert "ConfigError" in err and err.splitlines()[-1] == f"error: {config}.limit: expected int, got 'five' (str)"


def test_interrupt_exits_1(monkeypatch, capsys):
    from infimed.commands import card

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(card, "main", interrupted)
    status, err = _run(["card", "--model", "x"], capsys, monkeypatch)
    assert status == 1 and err.splitlines() == ["error: interrupted"]


def test_user_errors_share_one_base():
    assert issubclass(ConfigError, InfiMedError) and issubclass(ConfigError, ValueError)


def test_pull_into_an_existing_file_is_one_line(tmp_path, capsys, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"x")
    status, err = _run(["pull", "org/name", "--local-dir", str(target)], capsys, monkeypatch)
    assert status == 2 and err.splitlines() == [
        f"error: `--local-dir` '{target}' is an existing file, not a folder; pass a folder path (it is created if "
        "missing)."
    ]


def test_missing_local_model_folder_is_named(tmp_path):
    from infimed.core.errors import InputFileError
    from infimed.core.generation import load_for_generation

    missing = tmp_path / "runs" / "tiny"
    with pytest.raises(InputFileError, match=rf"`--model` folder '{missing}' does not exist"):
        load_for_generation(str(missing))
