"""The curation run: read sources chunk by chunk, score, filter, deduplicate, decontaminate, write.

    source rows --(rules, num_proc workers)--> image/text/answer scores + image hashes
                --(rule thresholds)--> --(decontamination)--> --(dedup)-->
                --(judge, optional: alignment / medical relevance, thresholds)--> kept shard rows | dropped.jsonl
                                                                   \--> report counts, histograms, audit sample

Every row ends in exactly one place: kept, or dropped with one reason (the first that applies, in the order above).
The judge comes last so that no request is paid for a sample already dropped; the first of a set of duplicates is the
one judged, and if it fails, its copies stay dropped as duplicates (they carry the same content).
Chunks of ``chunk_size`` rows bound memory, so a streamed Hub source is never held in full; output parquet shards are
written as soon as ``shard_size`` kept rows exist.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from infimed.core.endpoints import make_client
from infimed.data.converters import READERS, to_training_example, training_features
from infimed.data.converters.sources import load_table
from infimed.model_cards.dataset_card import render_dataset_card
from infimed.processing.image_io import load_image

from .audit import AuditSampler, export_audit
from .config import CurationConfig, SourceConfig
from .dedup import ContaminationIndex, Deduplicator
from .dimensions import DIMENSIONS, DIMENSION_NAMES, MODEL_DIMENSIONS, RULE_DIMENSIONS, score_column
from .judge import JudgeScorer
from .output import JUDGE_CACHE, discard_output, finish_output, start_output
from .report import CurationReport
from .rules import RuleResult, score_sample

__all__ = ["iter_source_rows", "output_features", "run_curation", "image_to_bytes"]

logger = logging.getLogger(__name__)


def iter_source_rows(src: SourceConfig, chunk_size: int, streaming: bool = False) -> Iterator[list[dict]]:
    """Chunks of training-format rows of one source (images left undecoded)."""
    if src.format:
        if src.format not in READERS:
            raise ValueError(f"Unknown converter `format: {src.format}`; choose one of {sorted(READERS)}.")
        records = READERS[src.format](src.source, split=src.split, **src.options)[: src.limit]
        for start in range(0, len(records), chunk_size):
            yield [to_training_example(r, src.name) for r in records[start : start + chunk_size]]
        return
    table = load_table(src.path or src.hub_id, src.split, streaming=streaming)
    seen = 0
    for batch in table.iter(batch_size=chunk_size):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        if src.limit is not None:
            rows = rows[: src.limit - seen]
        seen += len(rows)
        if rows:
            yield rows
        if src.limit is not None and seen >= src.limit:
            return


def output_features():
    """Training-format columns + one score column per dimension + ``quality_flags``."""
    import datasets

    features = dict(training_features())
    for name in DIMENSION_NAMES:
        features[score_column(name)] = datasets.Value("float32")
    features["quality_flags"] = datasets.List(datasets.Value("string"))
    return datasets.Features(features)


def image_to_bytes(obj) -> dict:
    """A ``datasets`` Image value holding the original encoded bytes (PIL images are written as PNG)."""
    from PIL import Image

    if isinstance(obj, dict):
        if obj.get("bytes"):
            return {"bytes": obj["bytes"], "path": None}
        obj = obj.get("path")
    if isinstance(obj, (str, Path)):
        return {"bytes": Path(obj).read_bytes(), "path": None}
    if isinstance(obj, bytes):
        return {"bytes": obj, "path": None}
    if isinstance(obj, Image.Image):
        buffer = io.BytesIO()
        obj.save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    return image_to_bytes(load_image(obj))


def _normalise_messages(messages) -> list[dict]:
    out = []
    for m in messages or []:
        content = m.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else [
            {"type": p.get("type"), "text": p.get("text")} for p in content or []
        ]
        out.append({"role": m.get("role"), "content": parts})
    return out


class _ShardWriter:
    def __init__(self, out_dir: Path, shard_size: int):
        self.dir = out_dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("train-*.parquet"):
            stale.unlink()  # a re-run replaces the previous output instead of mixing with it
        self.shard_size = shard_size
        self.buffer: list[dict] = []
        self.paths: list[Path] = []
        self.features = output_features()

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self, force: bool = False) -> None:
        import datasets

        if not self.buffer and not force:
            return
        path = self.dir / f"train-{len(self.paths):05d}.parquet"
        columns = {name: [r[name] for r in self.buffer] for name in self.features}  # from_dict: keeps columns at 0 rows
        datasets.Dataset.from_dict(columns, features=self.features).to_parquet(str(path))
        self.paths.append(path)
        self.buffer = []

    def close(self) -> list[str]:
        if self.buffer or not self.paths:
            self.flush(force=True)  # an empty shard keeps the schema loadable when nothing was kept
        final = []
        for i, path in enumerate(self.paths):
            target = path.with_name(f"train-{i:05d}-of-{len(self.paths):05d}.parquet")
            path.rename(target)
            final.append(str(target.relative_to(self.dir.parent)))
        return final


def _rule_reason(result: RuleResult, config: CurationConfig) -> str | None:
    for dim in RULE_DIMENSIONS:
        score = result.scores[dim]
        if score is not None and score < config.threshold(dim):
            worst = next((f for f in result.flags if f.startswith(f"{dim}:")), f"{dim}:below_threshold")
            return worst
    return None


def _decoded(row: dict) -> list:
    return [load_image(obj) for obj in row.get("images") or []]


def _build_contamination(config: CurationConfig, scorer: Callable) -> ContaminationIndex:
    dc = config.decontamination
    index = ContaminationIndex(dc.max_hamming, dc.min_question_words, bits=config.dedup.hash_size**2)
    for bench in dc.benchmarks:
        for rows in iter_source_rows(bench, config.chunk_size):
            for row in rows:
                result = scorer(row)
                index.add(result.exact_hashes, result.dhashes, row.get("question"))
    return index


def run_curation(config: CurationConfig, output_dir: str | Path, judge_client=None,
                 progress: Callable[[str], None] = print, overwrite: bool = False) -> dict:
    """Curate ``config.sources`` into ``output_dir``; returns the report dict (also written as JSON).

    The output is written beside ``output_dir`` and swapped in only when the run has finished
    (``infimed.data.curation.output``): a failed or killed run leaves the previous output intact. An earlier output
    in ``output_dir`` is replaced only with ``overwrite``.
    ``judge_client`` overrides the client built from ``config.judge`` (tests pass a stub-backed or tiny local one).
    """
    final = Path(output_dir)
    out = start_output(final, overwrite)
    try:
        result = _curate(config, out, final / JUDGE_CACHE, judge_client, progress)
    except BaseException:
        discard_output(out)
        raise
    finish_output(out, final)
    return result


def _judge_client(config: CurationConfig, judge_cache: Path):
    return make_client(config.judge, judge_cache, where="judge")


def _curate(config: CurationConfig, out: Path, judge_cache: Path, judge_client, progress) -> dict:
    started = time.perf_counter()
    scorer = partial(score_sample, image_rules=config.image_rules, text_rules=config.text_rules,
                     answer_rules=config.answer_rules, hash_size=config.dedup.hash_size)
    judge = None
    if config.judge.enabled:
        client = judge_client if judge_client is not None else _judge_client(config, judge_cache)
        judge = JudgeScorer(client, config.judge.dimensions, config.judge.samples_per_call,
                            config.judge.max_image_side)
        progress(f"[curate] judge on: {client.identity()} scores {config.judge.dimensions}")
    else:
        progress(f"[curate] judge off: {', '.join(MODEL_DIMENSIONS)} are NOT scored (enable `judge` in the config)")

    contamination = _build_contamination(config, scorer)
    progress(f"[curate] decontamination index: {contamination.items} benchmark items")
    dedup = Deduplicator(config.dedup.near_images, config.dedup.max_hamming, bits=config.dedup.hash_size**2)
    report = CurationReport()
    audit = AuditSampler(config.audit, seed=config.seed)
    writer = _ShardWriter(out, config.shard_size)
    dropped_log = open(out / "dropped.jsonl", "w", encoding="utf-8")
    pool = multiprocessing.get_context("fork").Pool(config.num_proc) if config.num_proc > 1 else None
    scoring_seconds = 0.0
    try:
        for src in config.sources:
            n_src = 0
            for rows in iter_source_rows(src, config.chunk_size, config.streaming):
                t0 = time.perf_counter()
                results = pool.map(scorer, rows, chunksize=max(1, len(rows) // (4 * config.num_proc))) if pool \
                    else [scorer(r) for r in rows]
                scoring_seconds += time.perf_counter() - t0
                reasons = [_rule_reason(r, config) for r in results]
                for i, (row, result) in enumerate(zip(rows, results)):
                    if reasons[i] is None and contamination.items:
                        reasons[i] = contamination.check(result.exact_hashes, result.dhashes, row.get("question"))
                    if reasons[i] is None and config.dedup.enabled:
                        reasons[i] = dedup.check(result.exact_hashes, result.dhashes, row.get("question"),
                                                 row.get("answer"))
                if judge is not None:  # last: the judge is never paid for a sample that is dropped anyway
                    failed = _apply_judge(judge, config, rows, results, reasons)
                    if failed:
                        progress(f"[curate] WARNING: the judge could not score {failed[0]} of {failed[1]} samples "
                                 f"in this chunk (e.g. {failed[2]})")
                for row, result, reason in zip(rows, results, reasons):
                    report.add(src.name, reason, result.scores, result.flags)
                    audit.offer(row, src.name, result, reason)
                    if reason is None:
                        writer.add(_output_row(row, src.name, result))
                    else:
                        dropped_log.write(json.dumps({"id": str(row.get("id")), "source": src.name, "reason": reason,
                                                      "flags": result.flags, "details": result.details},
                                                     ensure_ascii=False) + "\n")
                n_src += len(rows)
                progress(f"[curate] {src.name}: {n_src} rows scored, {report.kept[src.name]} kept so far")
    finally:
        dropped_log.close()
        if pool is not None:
            pool.close()
            pool.join()
    shards = writer.close()
    audit_files = export_audit(audit.entries(), out / "audit", config) if config.audit.enabled else None
    elapsed = time.perf_counter() - started
    result = report.finalize(
        thresholds={d: config.threshold(d) for d in config.active_dimensions},
        dimensions_scored=config.active_dimensions,
        dimensions_not_scored={d: "judge disabled in config" for d in MODEL_DIMENSIONS
                               if d not in config.active_dimensions},
        judge=({**judge.client.identity(), "dimensions": config.judge.dimensions, "on_failure": config.judge.on_failure}
               if judge else None),
        dedup={"enabled": config.dedup.enabled, **dedup.counts},
        decontamination={"benchmarks": [b.name for b in config.decontamination.benchmarks],
                         "benchmark_items": contamination.items, **contamination.counts},
        sources=[{"name": s.name, "path": s.path, "hub_id": s.hub_id, "format": s.format, "source": s.source,
                  "split": s.split, "license": s.license} for s in config.sources],
        output={"shards": shards, "dropped_log": "dropped.jsonl", "audit": audit_files},
        timing={"seconds": round(elapsed, 3), "rule_scoring_seconds": round(scoring_seconds, 3),
                "num_proc": config.num_proc},
        config=config.to_dict(),
    )
    (out / "curation_report.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "README.md").write_text(render_dataset_card(result, config, dimensions=DIMENSIONS), encoding="utf-8")
    return result


def _apply_judge(judge, config: CurationConfig, rows, results, reasons) -> tuple[int, int, str] | None:
    """Judge the rows still kept; returns (failures, judged, first failure) when any request failed."""
    todo = [i for i, reason in enumerate(reasons) if reason is None]
    if not todo:
        return None
    verdicts = judge.score([rows[i] for i in todo], [_decoded(rows[i]) for i in todo])
    failures = [v for v in verdicts if v.scores is None]
    for i, verdict in zip(todo, verdicts):
        if verdict.scores is None:
            results[i].flags.append(f"unscored:{verdict.error}")
            results[i].details.append(f"judge: {verdict.detail}"[:300])
            for dim in judge.dimensions:
                results[i].scores[dim] = None
            if config.judge.on_failure == "drop":
                reasons[i] = f"unscored:{verdict.error}"
            continue
        results[i].scores.update(verdict.scores)
        for dim in judge.dimensions:
            if verdict.scores[dim] < config.threshold(dim):
                results[i].flags.append(f"{dim}:judge_low")
                reasons[i] = reasons[i] or f"{dim}:judge_low"
    if failures:
        return len(failures), len(todo), f"{failures[0].error}: {failures[0].detail}"[:200]
    return None


def _output_row(row: dict, source: str, result: RuleResult) -> dict:
    out = {
        "id": str(row.get("id")),
        "images": [image_to_bytes(obj) for obj in row.get("images") or []],
        "messages": _normalise_messages(row.get("messages")),
        "kind": row.get("kind"),
        "question": row.get("question"),
        "answer": row.get("answer"),
        "options": [str(o) for o in row.get("options") or []],
        "source": row.get("source") or source,
        "quality_flags": list(result.flags),
    }
    for name in DIMENSION_NAMES:
        out[score_column(name)] = result.scores.get(name)
    return out
