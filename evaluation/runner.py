"""The evaluation run behind ``infimed eval``: load benchmarks, generate (or read) predictions, score, judge, write.

    from infimed.evaluation import EvalConfig, run_evaluation
    results = run_evaluation(EvalConfig(model="runs/tiny", benchmarks=["demo"], data_dir="demo-output/data",
                                        output_dir="runs/tiny/eval"))

Output layout::

    OUTPUT/results.json              model, config, versions, prompt/parser/judge identity, seed, metrics, model_index
    OUTPUT/results.md, results.png   a markdown table and a bar chart
    OUTPUT/<benchmark>/predictions.jsonl   one line per item: id, prompt, gold, prediction, extracted, correct, ...
    OUTPUT/<benchmark>/metrics.json
    OUTPUT/<benchmark>/cache.jsonl   generated predictions by cache key (a rerun resumes from it)

Protocols (``--protocol``), each greedy:

- ``default``: our prompts and scoring; new tokens by question kind (64 for short answers, 256 for open ones);
- ``medevalkit``: MedEvalKit's run: up to 8192 new tokens, at most 6 images per item, its prompts and, beside ours,
  its scoring (``medevalkit_compat``);
- ``reasoning``: for ``<think>``/``<answer>`` models: reasoning prompts and 4096 new tokens.

``--answer-format`` appends the ``<think>``/``<answer>`` instruction (``core.answers.ANSWER_FORMAT_INSTRUCTION``)
to each prompt as its own text part, exactly as CoT-SFT data (`infimed synthesize-cot`) and GRPO prompts carry it,
and reports ``format_compliance`` (the share of predictions that follow that layout) per benchmark and kind.

A generation that stops at the token limit is counted per benchmark (``truncated``), never silently scored.
Served models (``--endpoint URL --served-model NAME``: vLLM, SGLang, TGI) get the same prompts, cache and scoring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from infimed.core.answers import ANSWER_FORMAT_INSTRUCTION, follows_answer_format
from infimed.core.endpoints import EndpointConfig, make_client
from infimed.core.errors import InputFileError
from infimed.core.generation import load_for_generation
from infimed.core.prompts import DATASET_REASONING_SUFFIX

from .benchmarks import BENCHMARKS, LoadedBenchmark, load_benchmark, resolve_benchmark_names
from .generation import (
    GenerationOptions, GenerationRequest, PredictionCache, batched_generate, endpoint_generate, image_digest,
    model_fingerprint, token_budget,
)
from .items import EvalItem
from .metric import METRIC_NAME
from .metric.infimed_medvqa import InfiMedMedVQA
from .prompts import build_prompt, prompt_images, template_identity
from .scoring import aggregate_metrics, score_item

__all__ = ["PROTOCOLS", "EvalConfig", "build_messages", "metric_inputs", "read_predictions", "run_evaluation"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("default", "medevalkit", "reasoning")
MEDEVALKIT_MAX_IMAGES = 6  # MedEvalKit's `max_image_num`
PARSER_VERSION = 2  # bump when infimed.core.answers changes what it extracts (2: question-aware yes/no)


@dataclass
class EvalConfig:
    """Everything one evaluation run depends on; recorded in ``results.json``."""

    benchmarks: list[str] = field(
        default_factory=lambda: ["demo"], metadata={"help": "Benchmark names (e.g. vqa_rad slake, or "
                                                      "vqa_rad,slake), or 'infimed' for the seven of its table."}
    )
    output_dir: str = field(default="eval-output", metadata={"help": "Folder for results and per-item predictions."})
    model: str | None = field(
        default=None, metadata={"help": "Checkpoint folder or Hub id (not needed when scoring given predictions)."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding local benchmark copies (<name>/)."})
    predictions: str | None = field(
        default=None, metadata={"help": "JSONL of {id, prediction[, benchmark]} to score instead of generating."}
    )
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N items per benchmark."})
    seed: int = field(
        default=42, metadata={"help": "MedEvalKit's default; greedy decoding draws nothing, compat MMMU guesses do."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message before each question."})
    reasoning: bool = field(default=False, metadata={"help": "Reasoning prompts: the final answer in \\boxed{}."})
    answer_format: bool = field(
        default=False, metadata={"help": "Append the <think>/<answer> instruction CoT-SFT and GRPO train with, and "
                                         "report `format_compliance`."}
    )
    medevalkit_compat: bool = field(
        default=False, metadata={"help": "Also report MedEvalKit's scoring (its known faults) beside the correct one."}
    )
    protocol: Literal["default", "medevalkit", "reasoning"] = field(
        default="default", metadata={"help": "default | medevalkit (greedy, 8192 new tokens, at most 6 images, its "
                                             "prompts and scoring) | reasoning (<think>/<answer> models)."}
    )
    endpoint: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible server to evaluate (vLLM, SGLang, TGI), e.g. "
                                        "http://localhost:8000/v1; needs `--served-model`."}
    )
    served_model: str | None = field(default=None, metadata={"help": "Model name at `--endpoint`."})
    # 8 requests in flight keep one vLLM replica's batch full; its scheduler batches them further.
    endpoint_concurrency: int = field(default=8, metadata={"help": "Requests in flight at `--endpoint`."})
    endpoint_retries: int = field(default=3, metadata={"help": "Retries per request (connection errors, 429/5xx)."})
    # 600 s: 8192 tokens at ~20 tokens/s on a loaded server.
    endpoint_timeout: float = field(default=600.0, metadata={"help": "Seconds per request attempt."})
    judge: EndpointConfig | None = field(
        default=None, metadata={"help": "LLM judge for open answers (None: rule-based scores only)."}
    )
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, ... (default: cuda when available)."})
    generation: GenerationOptions = field(
        default_factory=GenerationOptions, metadata={"help": "How predictions are generated."}
    )
    progress: bool = field(default=True, metadata={"help": "Show tqdm progress bars."})

    def __post_init__(self):
        # `--benchmarks vqa_rad,slake` arrives as one comma-separated entry
        names = self.benchmarks if isinstance(self.benchmarks, str) else ",".join(self.benchmarks)
        self.benchmarks = resolve_benchmark_names(names)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {self.protocol!r}.")
        if self.protocol == "medevalkit":
            self.medevalkit_compat = True
            if self.generation.max_images is None:
                self.generation.max_images = MEDEVALKIT_MAX_IMAGES
        elif self.protocol == "reasoning":
            self.reasoning = True
        if self.answer_format and self.reasoning:
            raise ValueError("`answer_format` asks for <answer> tags and `reasoning` for \\boxed{}: choose one.")
        sources = [name for name, value in (("model", self.model), ("endpoint", self.endpoint),
                                            ("predictions", self.predictions)) if value is not None]
        if not sources:
            raise ValueError(
                "Nothing to score: give `--model` to generate predictions, `--endpoint URL --served-model NAME` to "
                "ask a served model, or `--predictions FILE.jsonl` to score existing ones."
            )
        if len(sources) > 1:
            raise ValueError(f"Give one of `--model`, `--endpoint`, `--predictions`; got {', '.join(sources)}.")
        if self.endpoint is not None:
            if not self.served_model:
                raise ValueError("`--endpoint` needs `--served-model NAME` (the name the server was started with).")
            EndpointConfig(base_url=self.endpoint, model=self.served_model, max_retries=self.endpoint_retries,
                           max_concurrency=self.endpoint_concurrency).check("served")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"`limit` must be positive, got {self.limit}.")
        if self.judge is not None:
            self.judge.check("judge")


def build_messages(
    item: EvalItem, reasoning: bool, system_prompt: str | None, prompt_set: str = "infimed", answer_format: bool = False
) -> tuple[list[dict], str]:
    """TRL-style chat messages for ``item`` (image parts first, then the prompt text of ``prompt_set``) and the
    prompt text; ``answer_format`` appends the `<think>/<answer>` instruction as a last text part, the layout of
    `training.rewards.add_format_instruction`."""
    if item.prompt_type == "dataset" and item.messages:
        messages = [dict(m) for m in item.messages]
        prompt = "\n".join(p.get("text", "") for m in messages if isinstance(m["content"], list)
                           for p in m["content"] if p.get("type") == "text")
        if reasoning:
            last = messages[-1]
            messages[-1] = {**last, "content": [*last["content"], {"type": "text", "text": DATASET_REASONING_SUFFIX}]}
            prompt += DATASET_REASONING_SUFFIX
    else:
        prompt = build_prompt(item, reasoning, prompt_set)
        content = [{"type": "image"} for _ in prompt_images(item, prompt_set)] + [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": content}]
    if answer_format:
        last = messages[-1]
        content = [{"type": "text", "text": last["content"]}] if isinstance(last["content"], str) else last["content"]
        messages[-1] = {**last, "content": [*content, {"type": "text", "text": "\n" + ANSWER_FORMAT_INSTRUCTION}]}
        prompt += "\n" + ANSWER_FORMAT_INSTRUCTION
    if system_prompt:
        messages = [{"role": "system", "content": [{"type": "text", "text": system_prompt}]}, *messages]
    return messages, prompt


def _format_compliance(items: list[EvalItem], predictions: list[str | None]) -> dict:
    """Share of predictions in the `<think>...</think><answer>...</answer>` layout: overall and per question kind."""
    by_kind: dict[str, list[bool]] = {}
    for item, prediction in zip(items, predictions, strict=True):
        by_kind.setdefault(str(item.kind), []).append(follows_answer_format(prediction or ""))
    flags = [flag for kind_flags in by_kind.values() for flag in kind_flags]
    return {"overall": sum(flags) / len(flags) if flags else None,
            "by_kind": {kind: sum(f) / len(f) for kind, f in by_kind.items()}}


def read_predictions(path: str | Path) -> dict[tuple[str | None, str], str]:
    """``{(benchmark or None, id): prediction}`` from a JSONL file of ``{"id", "prediction"[, "benchmark"]}``.

    Strict, because a wrong line would silently move a score: a line that is not UTF-8 JSON with `id` and
    `prediction`, or a second line for the same (benchmark, id), is an ``InputFileError`` naming ``path:line``.
    """
    return {key: prediction for key, (_, prediction) in _read_prediction_lines(path).items()}


def _read_prediction_lines(path: str | Path) -> dict[tuple[str | None, str], tuple[int, str]]:
    """``{(benchmark or None, id): (line number, prediction)}``; see ``read_predictions``."""
    if not Path(path).is_file():
        raise InputFileError(f"`--predictions` file {str(path)!r} does not exist (or is not a file).")
    out: dict[tuple[str | None, str], tuple[int, str]] = {}
    for lineno, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputFileError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start}); write the "
                                 "predictions file as UTF-8 JSON lines.") from exc
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (row.get("benchmark"), str(row["id"]))
            prediction = "" if row["prediction"] is None else str(row["prediction"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputFileError(
                f"{path}:{lineno}: expected a JSON object with `id` and `prediction` ({type(exc).__name__}: {exc})."
            ) from exc
        if key in out:
            raise InputFileError(f"{path}:{lineno}: duplicate id {key[1]!r}" + (f" of {key[0]}" if key[0] else "")
                                 + f" (first on line {out[key][0]}); keep one prediction per item.")
        out[key] = (lineno, prediction)
    return out


def _check_prediction_ids(given: dict, benchmarks: dict[str, LoadedBenchmark], path: str) -> None:
    """Every line of ``given`` must name an item of the benchmarks run (lines of other benchmarks are left alone)."""
    ids = {name: {item.id for item in loaded.items} for name, loaded in benchmarks.items()}
    every = set().union(*ids.values())
    for (benchmark, item_id), (lineno, _) in given.items():
        if benchmark is not None and benchmark not in ids:
            continue  # a benchmark of the file that this run does not evaluate
        if item_id not in (every if benchmark is None else ids[benchmark]):
            where = benchmark or " / ".join(ids)
            raise InputFileError(
                f"{path}:{lineno}: id {item_id!r} matches no item of {where}; the predictions were made for other "
                "data (a different export or split), or the `id` field was rewritten."
            )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for package in ("infimed", "torch", "transformers", "datasets", "evaluate", "trl", "peft"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = "not installed"
    return out


def metric_inputs(items: list[EvalItem], predictions: list[str | None], compat: bool = False) -> dict:
    """The ``compute`` arguments of the ``infimed_medvqa`` metric for these items (what the harness scores with)."""
    inputs = {"predictions": [p or "" for p in predictions], "references": [i.answer for i in items],
              "kinds": [i.kind for i in items], "options": [list(i.options) for i in items],
              "questions": [i.question for i in items]}
    if compat:
        inputs.update(mode="compat", benchmarks=[i.benchmark for i in items],
                      answer_types=[i.category.get("answer_type") for i in items],
                      sources=[dict(i.source) for i in items])
    return inputs


def run_evaluation(config: EvalConfig, model: Any = None, processor: Any = None, judge_client: Any = None) -> dict:
    """Run ``config`` and write the outputs; returns the ``results.json`` content.

    ``model`` / ``processor`` may be passed in (tests, the demo) instead of loading ``config.model``; ``judge_client``
    may be any ``infimed.core.llm_client`` client instead of the endpoint in ``config``.
    """
    from . import judge as judge_lib
    from .report import markdown_table, model_index, plot_results

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    given = _read_prediction_lines(config.predictions) if config.predictions else None
    served = None
    if config.endpoint is not None:
        served = make_client(EndpointConfig(
            base_url=config.endpoint, model=config.served_model, temperature=0.0, timeout=config.endpoint_timeout,
            max_retries=config.endpoint_retries, max_concurrency=config.endpoint_concurrency,
        ))  # no client cache: the per-item cache below resumes a run
    elif given is None and model is None:
        model, processor = load_for_generation(config.model, config.device)
    if given is None:
        from transformers import set_seed

        set_seed(config.seed)  # greedy decoding draws nothing; seeded anyway so any sampling model code is repeatable
    if judge_client is None and config.judge is not None:
        judge_client = make_client(config.judge, output / "judge_cache", where="judge")
    model_name = config.model or config.served_model or f"predictions:{Path(config.predictions).name}"
    fingerprint = model_fingerprint(model, config.model) if model is not None else None
    if served is not None:
        # The served name, not the URL: a server restarted on another host or port still resumes from the cache.
        fingerprint = hashlib.sha256(f"served|{config.served_model}".encode()).hexdigest()[:16]

    # `--medevalkit-compat` asks MedEvalKit's prompts word for word, so its scoring sees the answers it would get.
    prompt_set = "medevalkit" if config.medevalkit_compat else "infimed"
    # Every benchmark is loaded before the first is run, so a missing or empty one fails in seconds, not hours in.
    benchmarks = {name: load_benchmark(name, data_dir=config.data_dir) for name in config.benchmarks}
    if given is not None:
        _check_prediction_ids(given, benchmarks, config.predictions)
    all_metrics, specs, run_info = {}, {}, {}
    # Rule-based accuracy goes through the published `evaluate` metric, so `evaluate.load` users get our numbers.
    medvqa = InfiMedMedVQA(keep_in_memory=True)
    for name, loaded in benchmarks.items():
        items, spec = loaded.items[: config.limit], loaded.spec  # `limit` keeps a prefix; an id past it is known
        specs[name] = spec
        budget = config.generation.max_new_tokens or token_budget(
            {item.kind for item in items}, reasoning=config.reasoning, protocol=config.protocol)
        options = replace(config.generation, max_new_tokens=budget)
        bench_dir = output / name
        bench_dir.mkdir(parents=True, exist_ok=True)
        prompts, requests = [], []
        for item in items:
            messages, prompt = build_messages(item, config.reasoning, config.system_prompt, prompt_set,
                                             config.answer_format)
            sent_images = prompt_images(item, prompt_set)  # MedEvalKit's MMMU sends only the first image
            prompts.append(prompt)
            # The image content is part of the key: a benchmark re-exported with new images under the same ids must
            # not be answered from the cache. (Scoring given predictions needs no key: no image is read.)
            images = [image_digest(image) for image in sent_images] if given is None else []
            key_src = json.dumps([fingerprint, name, item.id, messages, images, asdict(options)],
                                 sort_keys=True, ensure_ascii=False, default=str)
            requests.append(GenerationRequest(hashlib.sha256(key_src.encode()).hexdigest(), messages, sent_images))
        errors: dict[str, int] = {}
        truncated = [False] * len(items)
        if given is not None:
            predictions = [given.get((name, item.id), given.get((None, item.id), (0, None)))[1] for item in items]
            missing = sum(p is None for p in predictions)
            if missing:
                errors["missing prediction"] = missing
                logger.warning("%s: %d items have no prediction in %s; scored as empty.", name, missing,
                               config.predictions)
        else:
            cache = PredictionCache(bench_dir / "cache.jsonl")
            if served is not None:
                predictions, errors = endpoint_generate(served, requests, options, cache=cache, desc=name,
                                                        progress=config.progress)
            else:
                predictions, errors = batched_generate(model, processor, requests, options, cache=cache, desc=name,
                                                       progress=config.progress)
            truncated = [cache.is_truncated(r.key) for r in requests]
            if any(truncated):
                logger.warning("%s: %d of %d generations stopped at the %d-token limit (counted as `truncated`); "
                               "raise `--max_new_tokens` to let them finish.", name, sum(truncated), len(items),
                               budget)
        rng = random.Random(config.seed)
        records = [
            score_item(item, pred, compat=config.medevalkit_compat, rng=rng) for item, pred in zip(items, predictions)
        ]
        for record, prompt, pred, cut in zip(records, prompts, predictions, truncated):
            record["prompt"] = prompt
            record["truncated"] = cut
            if pred is None:
                record["error"] = "no prediction"
        judge_counts = None
        if judge_client is not None:
            judge_counts = judge_lib.apply_judge(judge_client, items, records, compat=config.medevalkit_compat)
        metrics = aggregate_metrics(records, items, compat=config.medevalkit_compat)
        rule = medvqa.compute(**metric_inputs(items, predictions))
        metrics["metric"] = {"name": METRIC_NAME, "accuracy": rule["accuracy"]}
        if judge_counts is None:  # the judge replaces open-answer verdicts; without it, the metric's are the numbers
            metrics.update(accuracy=rule["accuracy"], correct=rule["correct"], unparsed=rule["unparsed"])
            if config.medevalkit_compat:
                compat_rule = medvqa.compute(**metric_inputs(items, predictions, compat=True), seed=config.seed)
                metrics["medevalkit_compat"]["total"].update(accuracy=compat_rule["accuracy"],
                                                             right=compat_rule["correct"])
        metrics["skipped"] = loaded.skipped
        metrics["errors"] = errors
        metrics["truncated"] = sum(truncated)
        if config.answer_format:
            metrics["format_compliance"] = _format_compliance(items, predictions)
        metrics["max_new_tokens"] = budget
        if judge_counts is not None:
            metrics["judge"] = judge_counts
        with open(bench_dir / "predictions.jsonl", "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        (bench_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
        all_metrics[name] = metrics
        run_info[name] = {"source": loaded.source, "split": spec.split, "num_items": len(items)}
        logger.info("%s: accuracy %.4f over %d items", name, metrics["accuracy"], len(items))

    results = {
        "model": model_name,
        "model_fingerprint": fingerprint,
        "benchmarks": all_metrics,
        "config": {**{k: v for k, v in asdict(config).items() if k != "generation"},
                   "generation": asdict(config.generation), "sources": run_info},
        "versions": _versions(),
        "protocol": {"name": config.protocol, "decoding": "greedy", "max_images": config.generation.max_images,
                     "max_new_tokens": {name: m["max_new_tokens"] for name, m in all_metrics.items()},
                     "truncated": {name: m["truncated"] for name, m in all_metrics.items()}},
        "endpoint": {"base_url": config.endpoint, "served_model": config.served_model} if served else None,
        "prompt": template_identity(config.reasoning, config.system_prompt, prompt_set),
        "parser": {"module": "infimed.core.answers", "version": PARSER_VERSION, "question_aware": True,
                   "medevalkit_compat": config.medevalkit_compat},
        "judge": judge_lib.judge_identity(judge_client, config.medevalkit_compat) if judge_client is not None else None,
        "seed": config.seed,
        "model_index": model_index(model_name, all_metrics, specs),
    }
    (output / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    (output / "results.md").write_text(markdown_table(model_name, all_metrics, specs), encoding="utf-8")
    plot_results(model_name, all_metrics, specs, output / "results.png")
    return results
