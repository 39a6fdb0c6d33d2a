"""Shared test set-up: offline, deterministic, and `tests/` importable for stand-in servers and fixtures."""

import os
import sys

# Tests never reach a hub: these make any accidental download fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(__file__))
