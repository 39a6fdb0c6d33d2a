"""Where `sdpa_varlen` is registered, and that checkpoints neither name it nor carry its file."""

import json
import os
import subprocess
import sys

from infimed.modeling import SDPA_VARLEN
from infimed.testing import tiny_model

_PROBE = """
import sys
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface
def known():
    return [name in m._global_mapping for m in (AttentionInterface, AttentionMaskInterface)]
import infimed
print(known(), end=" ")
import infimed.modeling
print(known())
"""


def test_registered_by_infimed_modeling_not_by_import_infimed():
    out = subprocess.run([sys.executable, "-c", _PROBE.replace("name in", f"{SDPA_VARLEN!r} in")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[False,", "False]", "[True,", "True]"]


def test_saved_checkpoint_neither_names_the_kernel_nor_carries_its_file(tmp_path):
    model = tiny_model(attn_implementation=SDPA_VARLEN)
    assert model.config.text_config._attn_implementation == SDPA_VARLEN
    model.save_pretrained(tmp_path)
    assert "modeling_infimed.py" in os.listdir(tmp_path)  # the remote code is there ...
    assert not [f for f in os.listdir(tmp_path) if "varlen" in f]  # ... without this kernel's file
    assert SDPA_VARLEN not in json.dumps(json.load(open(tmp_path / "config.json")))
