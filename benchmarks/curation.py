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


def _peak_rss_mb() -> dict:
    # ru_maxrss is in KiB on Linux; children = worker processes of the pool
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main": round(own, 1), "largest_worker": round(children, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="Rows to score.")
    parser.add_argument("--image-size", type=int, default=256, help="Image side in pixels.")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="Worker counts to time.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import multiprocessing

    import datasets

    from infimed.data.converters import training_features
    from infimed.data.curation import CurationConfig, run_curation
    from infimed.data.curation.rules import score_sample

    rows = _rows(args.samples, args.image_size, args.seed)
    config = CurationConfig.from_dict({"sources": [{"name": "bench", "path": "unused"}], "audit": {"enabled": False}})
    scorer = partial(score_sample, image_rules=config.image_rules, text_rules=config.text_rules,
                     answer_rules=config.answer_rules, hash_size=config.dedup.hash_size)
    rule_rates = {}
    for n_proc in args.num_proc:
        start = time.perf_counter()
        if n_proc == 1:
            results = [scorer(r) for r in rows]
        else:
            with multiprocessing.get_context("fork").Pool(n_proc) as pool:
                results = pool.map(scorer, rows, chunksize=max(1, len(rows) // (4 * n_proc)))
        rule_rates[str(n_proc)] = round(len(rows) / (time.perf_counter() - start), 1)
    dropped = sum(1 for r in results if r.scores["image_quality"] == 0.0)

    with tempfile.TemporaryDirectory() as tmp:
        datasets.Dataset.from_list(rows, features=training_features()).save_to_disk(os.path.join(tmp, "in"))
        end_to_end = {}
        for n_proc in args.num_proc:
            cfg = CurationConfig.from_dict({"sources": [{"name": "bench", "path": os.path.join(tmp, "in")}],
                                            "audit": {"enabled": False}, "num_proc": n_proc})
            start = time.perf_counter()
            report = run_curation(cfg, os.path.join(tmp, f"out{n_proc}"), progress=lambda _: None)
            end_to_end[str(n_proc)] = round(report["input"] / (time.perf_counter() - start), 1)

    print(json.dumps({
        "benchmark": "curation_rule_scoring",
        "samples": args.samples,
        "image_size": args.image_size,
        "rule_scoring_samples_per_s": rule_rates,
        "end_to_end_samples_per_s": end_to_end,
        "dropped_undecodable": dropped,
        "peak_rss_mb": _peak_rss_mb(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
