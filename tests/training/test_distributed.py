"""Two CPU processes (gloo) train on whole packed rows and get the same loss and weights as one process.

The global batch is the same: 2 rows per step, as 1 process x 2 rows or 2 processes x 1 row.
Run as a test, or as the worker itself: `torchrun --nproc_per_node 2 tests/training/test_distributed.py OUT 1`.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 2


def _worker(out_dir: str, rows_per_device: int) -> None:
    sys.path.insert(0, HERE)
    from test_sft import make_vqa_dataset

    from infimed.testing import tiny_model, tiny_processor
    from infimed.training.collator import PACKING_STATS_KEY
    from infimed.training.sft_config import InfiMedSFTConfig
    from infimed.training.sft_trainer import InfiMedSFTTrainer

    class Recorder(InfiMedSFTTrainer):
        seen: list = []

        def compute_loss(self, model, inputs, **kwargs):
            self.seen.append(list(inputs[PACKING_STATS_KEY]["source_indices"]))
            return super().compute_loss(model, inputs, **kwargs)

    args = InfiMedSFTConfig(
        output_dir=os.path.join(out_dir, "trainer"), max_length=160, per_device_train_batch_size=rows_per_device,
        max_steps=STEPS, learning_rate=0.5, optim="sgd", logging_steps=1, report_to=[], use_cpu=True, bf16=False,
        gradient_checkpointing=False, save_strategy="no", seed=0, assistant_only_loss=True,
        ddp_find_unused_parameters=True,
    )
    trainer = Recorder(model=tiny_model(num_image_tokens=16), args=args, train_dataset=make_vqa_dataset(16, seed=9),
                       processing_class=tiny_processor(num_image_tokens=16))
    trainer.train()
    rank = trainer.args.process_index
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"losses": losses, "seen": Recorder.seen, "world": trainer.args.world_size}, f)
    if rank == 0:
        torch.save({k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
                   os.path.join(out_dir, "weights.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out_dir, processes: int):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), os.path.abspath(__file__), str(out_dir), str(2 // processes)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(processes)]


@pytest.mark.slow
def test_two_processes_match_one_process_at_the_same_global_batch(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = _launch(tmp_path / "one", 1)
    two = _launch(tmp_path / "two", 2)
    assert two[0]["world"] == 2
    # every rank got whole rows, and together the ranks saw exactly the rows the single process saw
    for step in range(STEPS):
        together = sorted(two[0]["seen"][step] + two[1]["seen"][step])
        assert together == sorted(one[0]["seen"][step])
        assert not set(two[0]["seen"][step]) & set(two[1]["seen"][step])
    # SGD, so the weights compare the averaged gradients directly (Adam would amplify float noise on ~0 grads)
    assert len(one[0]["losses"]) == STEPS
    for a, b in zip(one[0]["losses"], two[0]["losses"]):
        assert abs(a - b) < 1e-4
    w1 = torch.load(tmp_path / "one" / "weights.pt")
    w2 = torch.load(tmp_path / "two" / "weights.pt")
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=1e-5, rtol=1e-4)


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
