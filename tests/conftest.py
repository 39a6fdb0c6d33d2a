"""Shared test set-up: offline and deterministic. `tests/` is a package, so helpers import as `tests.helpers.*`."""

import os

# Tests never reach a hub: these make any accidental download fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
