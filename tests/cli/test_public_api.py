"""The public surface: `from infimed import ...` names, the light `import infimed`, and the README quick start."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PUBLIC = [
    "InfiMedConfig", "InfiMedModel", "InfiMedForConditionalGeneration", "InfiMedProcessor", "InfiMedImageProcessor",
    "InfiMedSFTConfig", "InfiMedSFTTrainer", "InfiMedGRPOConfig", "InfiMedGRPOTrainer",
]
HEAVY = ("torch", "transformers", "trl", "datasets", "peft")


def _modules_after(code: str) -> set[str]:
    """Top-level heavy modules a fresh interpreter has imported after running `code`."""
    probe = f"import sys\n{code}\nprint('HEAVY:' + ','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    line = next(line for line in reversed(result.stdout.splitlines()) if line.startswith("HEAVY:"))
    return {m for m in line.removeprefix("HEAVY:").split(",") if m}


def test_public_names_resolve_to_the_defining_classes():
    import infimed
    from infimed.modeling import InfiMedConfig, InfiMedForConditionalGeneration
    from infimed.training.grpo_trainer import InfiMedGRPOTrainer

    assert set(PUBLIC) <= set(infimed.__all__)
    for name in PUBLIC:
        assert getattr(infimed, name).__name__ == name
    assert infimed.InfiMedConfig is InfiMedConfig
    assert infimed.InfiMedForConditionalGeneration is InfiMedForConditionalGeneration
    assert infimed.InfiMedGRPOTrainer is InfiMedGRPOTrainer
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        infimed.NotAThing  # noqa: B018


def test_import_infimed_and_cli_help_stay_light():
    assert _modules_after("import infimed") == set()
    # The listing builds its parsers on transformers' HfArgumentParser (a light import); no torch, TRL or datasets.
    help_run = "import infimed.cli as c\ntry:\n    c.main(['--help'])\nexcept SystemExit:\n    pass"
    assert _modules_after(help_run) <= {"transformers"}


def test_using_a_class_registers_the_auto_classes():
    code = (
        "import infimed\nfrom transformers import AutoConfig\n"
        "try:\n    AutoConfig.for_model('infimed')\nexcept ValueError:\n    print('unknown before')\n"
        "infimed.InfiMedConfig\nprint(type(AutoConfig.for_model('infimed')).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["unknown", "before", "InfiMedConfig"]


def test_readme_quick_start_runs_on_what_the_demo_leaves(tmp_path, monkeypatch):
    from infimed.data.demo_render import write_demo_dicom
    from infimed.testing import tiny_model, tiny_processor

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Quick start"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "demo-output/hub-ready" in code and "demo-output/example.dcm" in code
    # The two things `make demo` leaves that the snippet uses: a checkpoint folder and a DICOM file.
    hub_ready = tmp_path / "demo-output" / "hub-ready"
    tiny_model().save_pretrained(hub_ready)
    tiny_processor().save_pretrained(hub_ready)
    write_demo_dicom(tmp_path / "demo-output" / "example.dcm", seed=7)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md quick start", "exec"), {})


@pytest.mark.parametrize("package", ["infimed.core", "infimed.training", "infimed.evaluation", "infimed.data"])
def test_subpackage_imports_stay_light_as_their_docstrings_promise(package):
    # training/ and evaluation/ import their heavy modules on first use of a name (their docstrings say so).
    assert _modules_after(f"import {package}") == set()
