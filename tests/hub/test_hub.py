"""End to end against a loopback Hub: push with the real `huggingface_hub` client, pull into a fresh folder, load.

Client steps run in subprocesses because `huggingface_hub` reads HF_ENDPOINT at import time. The model is loaded back
in a process where `infimed` cannot be imported (`python -I` plus a meta-path blocker), as a Hub user would load it.

To run the client side with another huggingface_hub (e.g. 1.33, the GPU image's version), install it into a folder
and point `INFIMED_TEST_HF_HUB_PATH` at it:
    pip install --no-deps --target /tmp/hh133 huggingface_hub==1.33.0 httpx==0.28.1 httpcore==1.0.9
    INFIMED_TEST_HF_HUB_PATH=/tmp/hh133 pytest tests/hub/test_hub.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers.hub_server import HubServer

FAKE_TOKEN = "hf_InfiMedFakeTokenForTests0123456789abcd"  # shaped like a real token, valid only on the test server
MODEL_REPO, DATASET_REPO = "infimed-test/tiny-infimed", "infimed-test/tiny-curated"

pytestmark = pytest.mark.slow


def client_env(hub: HubServer, home: Path, token: str | None = FAKE_TOKEN) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="1",
               HF_HOME=str(home), HF_MODULES_CACHE=str(home / "modules"), HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false")
    if token is not None:
        env["HF_TOKEN"] = token
    if os.environ.get("INFIMED_TEST_HF_HUB_PATH"):
        env["PYTHONPATH"] = os.environ["INFIMED_TEST_HF_HUB_PATH"]
    return env


def run_cli(env: dict, *commands: list[str], cwd: Path) -> tuple[list[int], str]:
    """Run several `infimed` commands in ONE fresh process (imports dominate the cost); return exit codes and log."""
    script = textwrap.dedent("""
        import json, sys
        import huggingface_hub
        from infimed.cli import main
        print("HF_HUB_VERSION", huggingface_hub.__version__)
        print("EXIT_CODES", json.dumps([main(argv) for argv in json.loads(sys.argv[1])]))
    """)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps([list(c) for c in commands])], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    match = re.search(r"EXIT_CODES (\[.*\])", proc.stdout)
    assert match, f"the client process crashed:\n{log[-4000:]}"
    return json.loads(match.group(1)), log


ISOLATED_PRELUDE = textwrap.dedent("""
    import importlib.abc, os, sys

    if os.environ.get("INFIMED_TEST_HF_HUB_PATH"):  # -I ignores PYTHONPATH
        sys.path.insert(0, os.environ["INFIMED_TEST_HF_HUB_PATH"])

    class BlockInfimed(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "infimed" or name.startswith("infimed."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: Hub users do not have it)", name=name)
            return None

    sys.meta_path.insert(0, BlockInfimed())
    try:
        import infimed
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("infimed is importable in the isolated process")
""")


def run_isolated(env: dict, code: str, cwd: Path) -> str:
    """`python -I` (no PYTHONPATH, no cwd, no user site) with `infimed` blocked even though it is installed."""
    proc = subprocess.run([sys.executable, "-I", "-c", ISOLATED_PRELUDE + textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"isolated process failed:\n{log[-6000:]}"
    return log


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=FAKE_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def model_round_trip(hub, tmp_path_factory):
    """Save a tiny model, render its card, push it, pull it into a fresh folder; return paths, logits and logs."""
    from PIL import Image
    from safetensors.torch import save_file

    from infimed.testing import tiny_model, tiny_processor

    root = tmp_path_factory.mktemp("model_round_trip")
    source, pulled, home = root / "source", root / "pulled", root / "hf_home"
    model, processor = tiny_model(), tiny_processor()
    model.save_pretrained(source)
    processor.save_pretrained(source)
    (source / "optimizer.pt").write_bytes(b"not for the hub")  # training leftovers must stay local

    image = Image.new("RGB", (64, 64), (90, 90, 90))
    image.paste((230, 230, 230), (20, 24, 36, 40))
    inputs = processor(text=["<image>Is there a lesion?"], images=[image], return_tensors="pt")
    inputs = {k: inputs[k].contiguous() for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        logits = model(**inputs).logits
    save_file(inputs, str(root / "inputs.safetensors"))
    Image.new("RGB", (80, 60), (40, 40, 40)).save(root / "chest_xray.png")  # the card example opens this file

    env = client_env(hub, home)
    codes, log = run_cli(
        env,
        ["card", "--model", str(source), "--repo-id", MODEL_REPO],
        ["push-model", str(source), "--repo", MODEL_REPO, "--commit-message", "tiny model"],
        ["pull", MODEL_REPO, "--local-dir", str(pulled)],
        cwd=root,
    )
    assert codes == [0, 0, 0], log
    return {"root": root, "source": source, "pulled": pulled, "home": home, "env": env, "logits": logits,
            "log": log}


def test_push_is_one_commit_of_the_loadable_files(hub, model_round_trip):
    source = model_round_trip["source"]
    files = hub.files(MODEL_REPO)
    assert hub.commit_count(MODEL_REPO) == 2  # the repo's initial .gitattributes commit + one push
    expected = {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
                "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "README.md", ".gitattributes"}
    assert expected <= set(files)
    code_files = {p.name for p in source.glob("*.py")}
    assert code_files and code_files <= set(files)
    assert "optimizer.pt" not in files
    for name in expected - {".gitattributes"}:
        assert files[name] == (source / name).read_bytes(), name
    config = json.loads(files["config.json"])
    assert "AutoModelForImageTextToText" in config["auto_map"]
    # weights travelled through the LFS endpoints, not inline in the commit
    assert any(path.startswith("/_lfs/") for method, path, _ in hub.requests if method == "PUT")


def test_pulled_model_loads_without_infimed_with_equal_logits(model_round_trip):
    root, pulled = model_round_trip["root"], model_round_trip["pulled"]
    assert (pulled / "README.md").read_bytes() == (model_round_trip["source"] / "README.md").read_bytes()
    run_isolated(model_round_trip["env"], f"""
        import re, sys, torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained({str(pulled)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        AutoProcessor.from_pretrained({str(pulled)!r}, trust_remote_code=True)
        inputs = load_file({str(root / "inputs.safetensors")!r})
        with torch.no_grad():
            logits = model(**inputs).logits
        save_file({{"logits": logits.contiguous()}}, {str(root / "logits_pulled.safetensors")!r})

        # The card's "How to use" example, verbatim: it loads {MODEL_REPO!r} from the (loopback) Hub by id.
        card = open({str(pulled / "README.md")!r}, encoding="utf-8").read()
        exec(re.search(r"```python\\n(.*?)```", card, re.S).group(1))
        # ... and its DICOM claim: the processor's own code reads a DICOM path
        from pydicom.data import get_testdata_file
        dicom = processor(text=prompt, images=[get_testdata_file("CT_small.dcm")], return_tensors="pt")
        assert dicom["pixel_values"].shape[0] == 1
        assert "infimed" not in sys.modules
    """, cwd=root)
    from safetensors.torch import load_file

    pulled_logits = load_file(str(root / "logits_pulled.safetensors"))["logits"]
    original = model_round_trip["logits"]
    assert pulled_logits.shape == original.shape
    assert (pulled_logits - original).abs().max().item() < 1e-5


@pytest.fixture(scope="module")
def dataset_round_trip(hub, tmp_path_factory):
    """A tiny curated-style dataset (parquet shard with images and messages + card), pushed and pulled back."""
    import datasets
    from PIL import Image

    root = tmp_path_factory.mktemp("dataset_round_trip")
    source, pulled, home = root / "curated", root / "pulled", root / "hf_home"
    features = datasets.Features({
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "messages": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "answer": datasets.Value("string"),
    })
    rows = {
        "id": [f"s{i}" for i in range(3)],
        "images": [[Image.new("RGB", (16, 16), (40 * i, 10, 200 - 40 * i))] for i in range(3)],
        "messages": [[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "yes"}]
                     for i in range(3)],
        "answer": ["yes", "no", "yes"],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    (source / "data").mkdir(parents=True)
    dataset.to_parquet(str(source / "data" / "train-00000-of-00001.parquet"))
    (source / "README.md").write_text(
        "---\nlicense: cc-by-4.0\ntask_categories:\n- visual-question-answering\nconfigs:\n- config_name: default\n"
        "  data_files:\n  - split: train\n    path: data/train-*.parquet\n---\n\n# tiny curated\n\nTest data.\n")
    (source / "curation_report.json").write_text(json.dumps(
        {"input": 3, "kept": 3, "dropped": {}, "output": {"shards": ["data/train-00000-of-00001.parquet"]}}))
    (source / "audit.html").write_text("<html>clinician audit, stays local</html>")

    env = client_env(hub, home)
    codes, log = run_cli(
        env,
        ["push-dataset", str(source), "--repo", DATASET_REPO],
        ["pull", DATASET_REPO, "--repo-type", "dataset", "--local-dir", str(pulled)],
        cwd=root,
    )
    assert codes == [0, 0], log
    return {"root": root, "source": source, "pulled": pulled, "home": home, "dataset": dataset, "log": log}


def test_dataset_round_trip_loads_with_datasets(hub, dataset_round_trip):
    import datasets
    import numpy as np

    files = hub.files(DATASET_REPO, repo_type="dataset")
    assert {"README.md", "curation_report.json", "data/train-00000-of-00001.parquet"} <= set(files)
    assert "audit.html" not in files
    pulled, original = dataset_round_trip["pulled"], dataset_round_trip["dataset"]
    loaded = datasets.load_dataset("parquet", data_files={"train": str(pulled / "data" / "train-*.parquet")},
                                   split="train")
    assert loaded.features == original.features
    assert loaded.num_rows == original.num_rows
    by_card = datasets.load_dataset(str(pulled), split="train")  # the card's `configs` locate the shards
    assert by_card.num_rows == original.num_rows and by_card.features == original.features
    for got, want in zip(loaded, original):
        assert got["id"] == want["id"] and got["messages"] == want["messages"] and got["answer"] == want["answer"]
        assert np.array_equal(np.asarray(got["images"][0]), np.asarray(want["images"][0]))


def test_private_repo_branch_and_auth(hub, model_round_trip, tmp_path):
    """--private hides the repo from anonymous pulls; --revision commits to a branch that main does not see."""
    source = model_round_trip["source"]
    repo = "infimed-test/private-tiny"
    codes, log = run_cli(client_env(hub, tmp_path / "home"),
                         ["push-model", str(source), "--repo", repo, "--private", "--revision", "v1"], cwd=tmp_path)
    assert codes == [0], log
    assert hub.repos[("model", repo)].private
    assert "config.json" in hub.files(repo, revision="v1") and "config.json" not in hub.files(repo)
    # Without a token: the private repo is invisible, and nothing can be created.
    anonymous = client_env(hub, tmp_path / "anon", token=None)
    codes, log = run_cli(anonymous, ["pull", repo, "--local-dir", str(tmp_path / "x"), "--revision", "v1"],
                         ["push-model", str(source), "--repo", "infimed-test/anonymous"], cwd=tmp_path)
    assert codes == [1, 1], log
    assert "error: RepositoryNotFoundError" in log and "error: HfHubHTTPError" in log and "401" in log
    assert not (tmp_path / "x" / "config.json").exists() and ("model", "infimed-test/anonymous") not in hub.repos


def test_refused_folder_sends_nothing(hub, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "infimed"}))
    (broken / "pytorch_model.bin").write_bytes(b"pickle")
    before = len(hub.requests)
    codes, log = run_cli(client_env(hub, tmp_path / "home"), ["push-model", str(broken), "--repo", "infimed-test/x"],
                         cwd=tmp_path)
    assert codes == [1]
    assert "auto_map" in log and "pickle" in log and "tokenizer" in log
    # nothing about the repo reached the server (the client may fetch its agent registry, a harmless GET)
    assert not [r for r in hub.requests[before:] if r[0] != "GET" or "infimed-test" in r[1]]
    assert ("model", "infimed-test/x") not in hub.repos


def test_token_never_written_or_logged(hub, model_round_trip, dataset_round_trip):
    # The token was really used: every write reached the server authorised (the server rejects wrong tokens).
    writes = [(m, p, ok) for m, p, ok in hub.requests if m == "POST" and "/commit/" in p]
    assert writes and all(ok for _, _, ok in writes)
    needle = FAKE_TOKEN.encode()
    for trip in (model_round_trip, dataset_round_trip):
        assert FAKE_TOKEN not in trip["log"]
        written = [p for p in trip["root"].rglob("*") if p.is_file()]
        assert len(written) > 10
        leaked = [str(p) for p in written if needle in p.read_bytes()]
        assert not leaked, f"token found in {leaked}"
    for files in (hub.files(MODEL_REPO), hub.files(DATASET_REPO, repo_type="dataset")):
        assert not [path for path, data in files.items() if needle in data]


def test_push_refuses_a_file_holding_the_token(hub, model_round_trip, tmp_path):
    import shutil

    folder = tmp_path / "leaky"
    shutil.copytree(model_round_trip["source"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["hub_token"] = FAKE_TOKEN
    (folder / "config.json").write_text(json.dumps(config))
    codes, log = run_cli(client_env(hub, tmp_path / "home"), ["push-model", str(folder), "--repo", "infimed-test/leak"],
                         cwd=tmp_path)
    assert codes == [1] and "contains your Hugging Face access token" in log
    assert FAKE_TOKEN not in log
    assert ("model", "infimed-test/leak") not in hub.repos
