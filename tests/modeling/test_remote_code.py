"""Saved checkpoints: same logits after a round trip, and loadable as remote code where `infimed` is unimportable."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from infimed.testing import tiny_model, tiny_processor
from tests.helpers.remote_code import BLOCK_INFIMED

pytestmark = pytest.mark.upstream  # `make test-latest` runs these against the newest releases

# A fresh interpreter in which importing `infimed` fails: only the checkpoint's own copied code can be used.
BLOCKED_LOADER = BLOCK_INFIMED + textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
    folder = sys.argv[1]
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert "infimed" not in sys.modules
    inputs = torch.load(sys.argv[2])
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.save(logits, sys.argv[3])
    from PIL import Image
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "lesion?"}]}]
    pipe = pipeline("image-text-to-text", model=model, processor=processor)
    result = pipe(text=messages, max_new_tokens=3)
    print(json.dumps({"model": type(model).__module__, "answer": result[0]["generated_text"][-1]["content"]}))
    """
)


def _inputs(processor):
    image = torch.rand(3, 64, 64)
    return dict(processor(text="<image>\nIs there a lesion?", images=[image], return_tensors="pt"))


def test_save_load_round_trip_gives_equal_logits(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = tiny_model(), tiny_processor()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    inputs = _inputs(processor)
    assert torch.equal(inputs["input_ids"], _inputs(loaded_processor)["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_infimed.InfiMedForConditionalGeneration"
    assert config["auto_map"]["AutoModel"] == "modeling_infimed.InfiMedModel"
    for name in ("configuration_infimed.py", "modeling_infimed.py", "processing_infimed.py", "image_io.py"):
        assert (tmp_path / name).exists(), name


def test_fresh_process_loads_remote_code_without_infimed(tmp_path):
    model, processor = tiny_model(), tiny_processor()
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    inputs = _inputs(processor)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_LOADER, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"].startswith("transformers_modules")  # the copied code, not the installed package
    assert isinstance(report["answer"], str)
    with torch.no_grad():
        expected = model(**inputs).logits
    assert torch.allclose(torch.load(tmp_path / "out.pt"), expected, atol=1e-6)
