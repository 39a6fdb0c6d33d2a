"""Evaluation throughput: one ``generate`` call per item (MedEvalKit's transformers path) versus ``infimed eval``'s
batched, left-padded, length-grouped generation, on the same model and items. Prints one JSON object.

    .venv/bin/python benchmarks/eval_throughput.py                        # tiny preset, CPU, fp32
    .venv/bin/python benchmarks/eval_throughput.py --device cuda --preset infimed-foundation-1.7b --dtype bfloat16

``identical_answers`` compares the greedy answers item by item (exact strings). Both paths run the same model in the
same dtype; only batching and left padding differ, so in fp32 on CPU any difference is a padding bug, not noise (in
bf16 on a GPU, kernels chosen per batch shape can round differently and flip near-tied tokens; ``mismatched_items``
lists them). The tiny model is initialised with ``--init-std 0.1`` (not the default 0.02, under which greedy decoding collapses to two or three
strings for all items and the comparison would prove little); ``distinct_answers`` reports how varied they were.
Items are the demo data's held-out questions (rendered radiographs, MedEvalKit-worded prompts). Real-size presets
use random weights and the tiny tokenizer (nothing is downloaded): shapes and speed are real,
answers are not.
"""

from __future__ import annotations

import argparse
import json
import time


def build(preset: str, init_std: float, dtype, device: str):
    import torch

    from infimed.modeling.presets import PRESETS, build_model
    from infimed.processing import InfiMedImageProcessor, InfiMedProcessor
    from infimed.testing import tiny_processor

    tokenizer = tiny_processor().tokenizer
    spec = PRESETS[preset]
    # Random weights with the tiny tokenizer's ids for <image>, <|im_end|> and padding (real presets use Qwen3 ids).
    model = build_model(
        preset, seed=0, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        text_config={**({"initializer_range": init_std} if init_std else {}), "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
                     "pad_token_id": tokenizer.pad_token_id},
    )
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model = model.to(device=device, dtype=dtype).eval()
    processor = InfiMedProcessor(
        image_processor=InfiMedImageProcessor(image_size=spec.vision_config["image_size"]),
        tokenizer=tokenizer,
        num_image_tokens=spec.num_image_tokens,
    )
    torch.manual_seed(0)
    return model, processor


def make_requests(num_items: int, seed: int):
    """The demo data's held-out questions (yes/no, multiple choice, open, caption) with their rendered images and
    MedEvalKit-worded prompts: realistic prompt lengths (about 25-70 text tokens plus the image tokens)."""
    from infimed.data.demo import DemoDataConfig, generate_demo_samples
    from infimed.evaluation.generation import GenerationRequest

    samples = generate_demo_samples(DemoDataConfig(num_samples=1, num_eval=num_items, seed=seed), "eval")
    requests = []
    for sample in samples:
        row = sample.row
        # The prompt turns without the gold answer; drop the None fields datasets-style rows carry on image parts.
        messages = [
            {"role": m["role"], "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]}
            for m in row["messages"] if m["role"] != "assistant"
        ]
        requests.append(GenerationRequest(key=row["id"], messages=messages, images=list(row["images"])))
    return requests


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    import torch

    from infimed.evaluation.generation import GenerationOptions, batched_generate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--num-items", type=int, default=64, help="64: four full batches of 16, ~1 minute on 2 cores.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16, help="16: a short answer, as on closed benchmarks.")
    parser.add_argument("--init-std", type=float, default=None,
                        help="Text-model init std: 0.1 for `tiny` (see the module docstring), the preset's otherwise.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="Timed runs per path, interleaved; the fastest counts (other processes only add time).")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's). On a shared, busy CPU use 1: spinning worker "
                             "threads that wait for descheduled peers slow both paths by up to 10x.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dtype = getattr(torch, args.dtype)
    init_std = args.init_std if args.init_std is not None else (0.1 if args.preset == "tiny" else None)
    model, processor = build(args.preset, init_std, dtype, args.device)
    requests = make_requests(args.num_items, args.seed)

    single = GenerationOptions(batch_size=1, max_new_tokens=args.max_new_tokens)
    batched = GenerationOptions(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    # Warm-up (allocator, kernels) on two items for both paths, so neither pays first-call costs in the timing.
    batched_generate(model, processor, requests[:2], batched, progress=False)
    batched_generate(model, processor, requests[:1], single, progress=False)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def run(options):
        out = batched_generate(model, processor, requests, options, progress=False)[0]
        sync()
        return out

    unbatched_times, batched_times = [], []
    for _ in range(args.repeats):
        unbatched_answers, t = timed(lambda: run(single))
        unbatched_times.append(t)
        batched_answers, t = timed(lambda: run(batched))
        batched_times.append(t)
    t_unbatched, t_batched = min(unbatched_times), min(batched_times)
    mismatches = [i for i, (a, b) in enumerate(zip(unbatched_answers, batched_answers)) if a != b]
    result = {
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "torch_threads": torch.get_num_threads(),
        "num_items": args.num_items,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "seconds_unbatched": [round(t, 3) for t in unbatched_times],
        "seconds_batched": [round(t, 3) for t in batched_times],
        "items_per_s_unbatched": round(args.num_items / t_unbatched, 3),
        "items_per_s_batched": round(args.num_items / t_batched, 3),
        "speedup": round(t_unbatched / t_batched, 2),
        "identical_answers": not mismatches,
        "mismatched_items": mismatches[:10],
        "distinct_answers": len(set(batched_answers)),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
