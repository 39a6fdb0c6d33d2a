"""Checkpoints keep working across transformers releases: remote code, with `infimed` unimportable.

Two directions are covered, in every environment CI runs (`make test` on the lock, `make test-latest` on the newest
releases):
- checkpoints saved by this code under transformers 5.23 and 5.24 (committed in `tests/fixtures/checkpoints/`) load,
  give the greedy tokens and logits recorded when they were saved, and train one step;
- a checkpoint saved now, in this environment, gives the in-process model's greedy output when loaded as remote code.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from infimed.testing import tiny_model, tiny_processor
from tests.helpers.remote_code import BLOCK_INFIMED

pytestmark = pytest.mark.upstream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"
SAVED = sorted(p for p in FIXTURES.glob("tf-*") if (p / "expected.json").exists())

# Runs in a fresh interpreter where `import infimed` fails: only the checkpoint's copied code can be used.
REMOTE_CODE_RUN = BLOCK_INFIMED + textwrap.dedent(
    """
    import json, sys
    folder, probe_dir = sys.argv[1], sys.argv[2]
    sys.path.insert(0, probe_dir)
    import torch
    import transformers
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from probe import MAX_NEW_TOKENS, probe_inputs
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert "infimed" not in sys.modules
    inputs = probe_inputs(processor)
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
        generated = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    # One training step: the loss on the probe falls after one SGD step on it.
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(2):
        loss = model(**inputs, labels=inputs["input_ids"]).loss
        losses.append(float(loss))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(json.dumps({
        "transformers": transformers.__version__,
        "module": type(model).__module__,
        "input_ids": inputs["input_ids"][0].tolist(),
        "last_logits_head": [float(x) for x in logits[:16]],
        "greedy_tokens": generated[0, inputs["input_ids"].shape[1]:].tolist(),
        "losses": losses,
    }))
    """
)


def _run_remote_code(folder: Path, tmp_path: Path) -> dict:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_RUN, str(folder), str(FIXTURES)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, f"remote-code run of {folder.name} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_fixture_checkpoints_cover_both_transformers_releases():
    assert {p.name for p in SAVED} >= {"tf-5.23.0", "tf-5.24.0"}, [p.name for p in SAVED]


@pytest.mark.parametrize("folder", SAVED, ids=[p.name for p in SAVED])
def test_saved_checkpoint_loads_generates_and_trains_under_this_release(folder, tmp_path):
    expected = json.loads((folder / "expected.json").read_text())
    got = _run_remote_code(folder, tmp_path)
    assert got["module"].startswith("transformers_modules"), got["module"]
    assert got["input_ids"] == expected["input_ids"]
    assert torch.allclose(torch.tensor(got["last_logits_head"]), torch.tensor(expected["last_logits_head"]), atol=1e-4)
    assert got["greedy_tokens"] == expected["greedy_tokens"], (
        f"checkpoint saved with transformers {expected['saved_with_transformers']}, run with {got['transformers']}"
    )
    assert got["losses"][1] < got["losses"][0], got["losses"]


def test_checkpoint_saved_now_gives_the_same_greedy_output_as_remote_code(tmp_path):
    sys.path.insert(0, str(FIXTURES))
    try:
        from probe import MAX_NEW_TOKENS, probe_inputs
    finally:
        sys.path.remove(str(FIXTURES))
    # The fixtures' shape; initializer_range 0.5 makes a random model whose greedy tokens vary.
    model = tiny_model(
        seed=1234, text_config={"num_hidden_layers": 2, "initializer_range": 0.5}, vision_config={"num_hidden_layers": 1}
    )
    processor = tiny_processor(num_image_tokens=16)
    model.config.num_image_tokens = 16
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    inputs = probe_inputs(processor)
    with torch.no_grad():
        local = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    got = _run_remote_code(folder, tmp_path)
    assert got["greedy_tokens"] == local.tolist()
    assert len(set(got["greedy_tokens"])) > 1, "the probe model should not repeat one token (a weak check otherwise)"
