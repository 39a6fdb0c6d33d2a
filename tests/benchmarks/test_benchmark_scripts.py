"""The benchmark scripts run in their quick modes and report consistent figures (not timed: CPU, tiny sizes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # stdout is the JSON object alone (log lines go to stderr)


@pytest.mark.slow
def test_data_pipeline_quick_reports_both_paths_and_the_consumer_rate():
    result = _run("data_pipeline.py", "--quick")
    assert result["samples_large"] == 10 * result["samples_small"] == 1000
    for key in ("first_step_seconds_small", "first_step_seconds_large", "offline_first_step_seconds_small",
                "steady_samples_per_s_per_worker", "steady_tokens_per_s_per_worker"):
        assert result[key] > 0, key
    assert result["first_step_ratio_large_to_small"] == pytest.approx(
        result["first_step_seconds_large"] / result["first_step_seconds_small"], rel=0.01)
    for key in ("streaming_packing_efficiency", "offline_packing_efficiency"):
        assert 0 < result[key] <= 1, key
    # every sample of the small dataset is in a row on both paths, and the rows hold what the efficiency says
    assert result["streaming_samples"] == result["offline_samples"] == result["samples_small"]
    assert result["offline_rows"] >= 1 and result["streaming_rows"] >= 1
    # the consumer's rate follows from its stated formula and figures
    tokens = result["consumer_mfu"] * result["consumer_peak_tflops"] * 1e12 / (6 * result["consumer_lm_parameters"])
    assert result["consumer_peak_tflops"] == 989.0
    assert result["consumer_tokens_per_s"] == pytest.approx(tokens, rel=1e-4)
    assert result["consumer_samples_per_s"] == pytest.approx(
        tokens / result["consumer_mean_tokens_per_sample"], rel=1e-2)
    assert result["keeps_up"] == (result["workers_needed"] <= result["workers_assumed"])
    assert result["workers_needed"] * result["steady_samples_per_s_per_worker"] >= result["consumer_samples_per_s"]


@pytest.mark.slow
def test_packing_benchmark_small_run_reports_consistent_figures():
    result = _run("packing.py", "--num-samples", "96", "--timed-steps", "1", "--warmup-steps", "1",
                  "--memory-steps", "1")
    assert result["num_samples"] == 96 and result["packer"] == "subset"
    assert (result["attn_implementation_padded"], result["attn_implementation_packed"]) == ("sdpa", "sdpa_varlen")
    assert 0 < result["padded_efficiency"] <= result["packing_efficiency"] <= 1
    by_length = result["packing_efficiency_by_row_length"]
    assert by_length[str(result["max_length"])]["efficiency"] == result["packing_efficiency"]
    for figures in by_length.values():
        assert 0 < figures["plain_best_fit_efficiency"] <= figures["bound"] <= 1
        assert 0 < figures["efficiency"] <= figures["bound"]
    timing = result[f"packer_seconds_at_{min(int(k) for k in by_length)}_tokens"]
    assert timing["pool"]["samples"] == 96 and timing["100000"]["samples"] == 100_000
    assert result["packed_cost_per_slot_ratio"] > 0 and result["loss_abs_diff"] < 1e-3
