"""Rule-based curation throughput on CPU: samples/s of the rule scorers (dimensions 1, 2, 5 + image hashes) serially
and with worker processes, the end-to-end ``run_curation`` rate, and peak memory. Prints one JSON object.

    python benchmarks/curation.py --samples 2000 --image-size 256 --num-proc 1 2

Images are random-texture PNGs (decode cost like real scans of that size); 2% are corrupt to exercise the error path.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import tempfile
import time
from functools import partial


def _rows(n: int, size: int, seed: int) -> list[dict]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size, size), dtype=np.uint8)
    rows = []
    for i in range(n):
        # shift + per-sample noise: distinct images at the cost of one PNG encode each
        img = np.roll(base, i, axis=1) // 2 + rng.integers(0, 128, (size, size), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="PNG")
        data = buffer.getvalue() if i % 50 else b"corrupt"  # 2% undecodable
        rows.append({
            "id": f"bench-{i}", "images": [{"bytes": data, "path": None}],
            "messages": [{"role": "user", "content": [{"type": "image", "text": None},
                                                      {"type": "text", "text": f"Is there a lesion in region {i}?"}]},
                         {"role": "assistant", "content": [{"type": "text", "text": "yes" if i % 2 else "no"}]}],
            "kind": "yes_no", "question": f"Is there a lesion in region {i}?", "answer": "yes" if i % 2 else "no",
            "options": [], "source": "bench",
        })
    return rows


def _own_peak_rss_mb() -> float:
    """Peak resident memory of this process. Linux keeps ``ru_maxrss`` across exec (a spawned child would inherit the
    parent's peak), so read the high-water mark of this address space, VmHWM, where it exists."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _time_rules(data_dir: str, n_proc: int) -> dict:
    """Runs in a fresh process: rule scoring only (as the pipeline's workers do it), rows read from disk."""
    import multiprocessing

    from infimed.data.converters.sources import load_table
    from infimed.data.curation import CurationConfig
    from infimed.data.curation.rules import score_sample

    rows = list(load_table(data_dir))
    config = CurationConfig.from_dict({"sources": [{"name": "bench", "path": data_dir}]})
    scorer = partial(score_sample, image_rules=config.image_rules, text_rules=config.text_rules,
                     answer_rules=config.answer_rules, hash_size=config.dedup.hash_size)
    start = time.perf_counter()
    if n_proc == 1:
        results = [scorer(r) for r in rows]
    else:
        with multiprocessing.get_context("fork").Pool(n_proc) as pool:
            results = pool.map(scorer, rows, chunksize=max(1, len(rows) // (4 * n_proc)))
    rate = len(rows) / (time.perf_counter() - start)
    undecodable = sum(1 for r in results if r.scores["image_quality"] == 0.0)
    return {"samples_per_s": round(rate, 1), "undecodable": undecodable, "peak_rss_mb": _own_peak_rss_mb()}


def _time_pipeline(data_dir: str, out_dir: str, n_proc: int) -> dict:
    """Runs in a fresh process: the whole `run_curation` (read, score, dedup, write shards, report, card)."""
    import datasets

    from infimed.data.curation import CurationConfig, run_curation

    datasets.disable_progress_bars()
    config = CurationConfig.from_dict({"sources": [{"name": "bench", "path": data_dir}], "audit": {"enabled": False},
                                       "num_proc": n_proc})
    start = time.perf_counter()
    report = run_curation(config, out_dir, progress=lambda _: None)
    rate = report["input"] / (time.perf_counter() - start)
    return {"samples_per_s": round(rate, 1), "kept": report["kept"], "peak_rss_mb": _own_peak_rss_mb()}


def _in_fresh_process(fn, *args) -> dict:
    # spawn: each measurement starts from an empty interpreter, so its peak memory is its own
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="Rows to score.")
    parser.add_argument("--image-size", type=int, default=256, help="Image side in pixels.")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="Worker counts to time.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import datasets

    from infimed.data.converters import training_features

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "in")
        datasets.Dataset.from_list(_rows(args.samples, args.image_size, args.seed),
                                   features=training_features()).save_to_disk(data_dir)
        rules = {str(n): _in_fresh_process(_time_rules, data_dir, n) for n in args.num_proc}
        pipeline = {str(n): _in_fresh_process(_time_pipeline, data_dir, os.path.join(tmp, f"out{n}"), n)
                    for n in args.num_proc}

    print(json.dumps({
        "benchmark": "curation_rule_scoring",
        "samples": args.samples,
        "image_size": args.image_size,
        "rule_scoring": rules,
        "end_to_end": pipeline,
        "note": "samples_per_s per worker count; peak_rss_mb is the measuring process (workers not included)",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
