"""Render the dataset card (``README.md``) of a curated dataset from its curation report.

The YAML header is produced by ``huggingface_hub.DatasetCardData`` (licence, languages, task categories, size
category, the parquet ``configs`` so ``load_dataset(folder_or_repo)`` finds the shards), and the rendered card is
parsed back with ``huggingface_hub.DatasetCard`` so an invalid header fails here, not on the Hub.

The curation pipeline (``infimed.data.curation``) calls this and hands in its quality-dimension table, so
``infimed.model_cards`` never imports ``infimed.data``: the dependency runs one way, data -> model_cards.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_dataset_card", "size_category"]

_TEMPLATES = Path(__file__).parent / "templates"


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def render_dataset_card(report: dict, config, repo_id: str | None = None, *, dimensions: Sequence[Any]) -> str:
    """Markdown card for a curation ``report`` (the dict ``run_curation`` returns) made with ``config``.

    ``dimensions``: the quality dimensions the curation scores (objects with ``index``, ``name``, ``scorer`` and
    ``summary``, e.g. ``infimed.data.curation.dimensions.DIMENSIONS``), listed in the card with their thresholds.
    """
    import jinja2
    from huggingface_hub import DatasetCard, DatasetCardData

    per_source = report.get("per_source", {})
    sources = []
    for s in config.sources:
        counts = per_source.get(s.name, {})
        origin = s.hub_id or s.source or s.path
        sources.append({"name": s.name, "origin": f"`{origin}`" + (f" ({s.format})" if s.format else ""),
                        "split": s.split, "input": counts.get("input", 0), "kept": counts.get("kept", 0),
                        "license": s.license})
    hub_sources = sorted({s.hub_id or s.source for s in config.sources if s.hub_id or (s.format and not Path(
        s.source).expanduser().exists())})
    card_data = DatasetCardData(
        license=config.card.license,
        language=list(config.card.language),
        pretty_name=config.card.pretty_name,
        task_categories=["visual-question-answering", "image-text-to-text"],
        tags=["medical", "infimed", "curated", "multimodal"],
        size_categories=[size_category(report.get("kept", 0))],
        source_datasets=hub_sources or None,
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    active = set(report.get("dimensions_scored", []))
    dimension_rows = [
        {"index": d.index, "name": d.name, "scorer": d.scorer, "summary": d.summary,
         "threshold": config.threshold(d.name) if d.name in active else "not scored"}
        for d in dimensions
    ]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    text = env.get_template("dataset_card.md.j2").render(
        card_data=card_data.to_yaml(),
        pretty_name=config.card.pretty_name,
        description=config.card.description,
        date=_dt.date.today().isoformat(),
        report=report,
        repo_hint=repo_id or "path/to/this/folder",
        sources=sources,
        license=config.card.license,
        dimensions=dimension_rows,
        judge=report.get("judge"),
        not_scored=sorted(report.get("dimensions_not_scored", {})),
    )
    DatasetCard(text)  # parses the YAML header; raises on an invalid one
    return text
