"""Render an InfiMed model card (README.md) from the checkpoint, its training recipe and its evaluation results.

    infimed card --model runs/demo/grpo --eval-results runs/demo/eval/results.json --recipe recipes/demo.yaml

The metadata block is built with `huggingface_hub.ModelCardData` (so `model-index` has the Hub's schema), the body
comes from `templates/model_card.md.j2`, and `validate_model_card` re-parses the result with `ModelCard` and refuses
missing metadata or an empty section before anything is written.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from .facts import checkpoint_facts, eval_facts, is_hub_id, load_recipe_summary, recipe_facts
from .rendering import render_template

__all__ = ["REQUIRED_SECTIONS", "render_model_card", "validate_model_card", "write_model_card"]

logger = logging.getLogger(__name__)

# Sections a card must have with content: the Hub's model-card guidance plus what a medical model owes its readers.
REQUIRED_SECTIONS = (
    "Model details",
    "How to use",
    "Training",
    "Evaluation",
    "Intended use",
    "Out-of-scope use",
    "Limitations",
    "Bias, risks and fairness",
    "Medical disclaimer",
)
REQUIRED_METADATA = {"pipeline_tag": "image-text-to-text", "library_name": "transformers"}
# InfiMed's code and the presets' backbones (SigLIP, Qwen3) are Apache-2.0; data licences may add terms, so it is a
# parameter and the card's limitations tell the publisher to check it.
DEFAULT_LICENSE = "apache-2.0"
BASE_TAGS = ("infimed", "medical", "vision-language", "image-text-to-text", "custom_code")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _find_run_file(model_dir: Path, *names: str) -> Path | None:
    """The recipe runner writes OUTPUT/recipe_summary.json and each stage's checkpoint to OUTPUT/<stage>, so run
    files sit in the checkpoint folder or one level up."""
    for folder in (model_dir, model_dir.parent):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def render_model_card(
    model_dir: str | Path,
    *,
    eval_results: str | Path | None = None,
    recipe: str | Path | None = None,
    recipe_summary: str | Path | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    license: str = DEFAULT_LICENSE,
    base_model: str | list[str] | None = None,
    datasets: str | list[str] | None = None,
    tags: list[str] | None = None,
):
    """Return a validated `huggingface_hub.ModelCard` for the checkpoint in `model_dir`.

    Args:
        eval_results: an `infimed eval` results.json; its `model_index` becomes the card's `model-index`.
        recipe: the recipe YAML that trained the checkpoint (stages, data mix, visual tokens, trainable modules).
        recipe_summary: the runner's recipe_summary.json; found next to or above `model_dir` when not given. A
            `recipe.yaml` beside it is used when `recipe` is not given.
        repo_id: the Hub id the card will live under (used in the loading example; else the folder path).
        model_name: the card's title and model-index name (default: the repo name, else the folder name).
        base_model / datasets / tags: added to what the recipe and the config reveal.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    model_dir = Path(model_dir)
    checkpoint = checkpoint_facts(model_dir)
    summary_path = Path(recipe_summary) if recipe_summary else _find_run_file(model_dir, "recipe_summary.json")
    summary = load_recipe_summary(summary_path)
    if recipe is None and summary_path is not None:
        # a copy of the recipe kept with the run's outputs documents the stages of e.g. a `push_to_hub` stage push
        recipe = next((p for p in (summary_path.with_name("recipe.yaml"), summary_path.with_name("recipe.yml"))
                       if p.is_file()), None)
        if recipe is not None:
            logger.info("Using the recipe %s found next to %s", recipe, summary_path)
    training = recipe_facts(recipe, summary, up_to_stage=model_dir.resolve().name) if recipe else None
    evaluation = eval_facts(eval_results) if eval_results else None

    model_name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)
    base_models = _as_list(base_model) + checkpoint["backbone_ids"] + ([training["base_model"]] if training and
                                                                      training["base_model"] else [])
    bad = [b for b in base_models if not is_hub_id(b)]
    if bad:
        raise ValueError(f"`base_model` entries {bad} are not Hub ids (ORG/NAME); pass Hub ids or leave them out.")
    all_datasets = _as_list(datasets) + (training["hub_datasets"] if training else [])
    stage_tags = [t for t in (training["stage_types"] if training else []) if t in ("sft", "grpo")]
    eval_results_meta = [
        EvalResult(
            task_type=entry["task"]["type"], task_name=entry["task"].get("name"),
            dataset_type=entry["dataset"]["type"], dataset_name=entry["dataset"].get("name", entry["dataset"]["type"]),
            dataset_split=entry["dataset"].get("split"), dataset_config=entry["dataset"].get("config"),
            metric_type=metric["type"], metric_name=metric.get("name"), metric_value=metric["value"],
        )
        for entry in (evaluation["model_index"] if evaluation else [])
        for metric in entry["metrics"]
    ]
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        base_model=list(dict.fromkeys(base_models)) or None,
        datasets=list(dict.fromkeys(all_datasets)) or None,
        tags=list(dict.fromkeys([*BASE_TAGS, *stage_tags, *(tags or [])])),
        model_name=model_name if eval_results_meta else None,
        eval_results=eval_results_meta or None,
    )
    text = render_template(
        "model_card.md.j2",
        card_data=card_data.to_yaml(),
        model_name=model_name,
        model_ref=repo_id or str(model_dir),
        checkpoint=checkpoint,
        training=training,
        run_summary=summary,
        summary_file=summary_path.name if summary_path and summary else None,
        evaluation=evaluation,
        license=license,
    )
    card = validate_model_card(text)
    if evaluation and len(card.data.eval_results or []) != len(eval_results_meta):
        raise ValueError("The rendered model-index lost evaluation results; check the results.json `model_index`.")
    return ModelCard(text)


def _sections(text: str) -> dict[str, str]:
    """{'## ' heading: the text until the next heading of level 2 or above}, on the card body."""
    body = re.split(r"^---\s*$", text, maxsplit=2, flags=re.MULTILINE)[-1]
    sections, current = {}, None
    for line in body.splitlines():
        match = re.match(r"^(#{1,2})\s+(.*\S)\s*$", line)
        if match:
            current = match.group(2) if len(match.group(1)) == 2 else None
            if current is not None:
                sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def validate_model_card(text: str):
    """Parse `text` with `huggingface_hub.ModelCard`; raise `ValueError` naming every metadata or section problem."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as err:  # ModelCard raises ValueError/yaml errors on malformed metadata or model-index
        raise ValueError(f"The model card's metadata does not parse: {err}") from err
    data, problems = card.data.to_dict(), []
    for key, expected in REQUIRED_METADATA.items():
        if data.get(key) != expected:
            problems.append(f"metadata `{key}` is {data.get(key)!r}, expected {expected!r}")
    if not data.get("license"):
        problems.append("metadata `license` is missing")
    if not data.get("tags"):
        problems.append("metadata `tags` is empty")
    for key in ("base_model", "datasets"):
        bad = [v for v in _as_list(data.get(key)) if not isinstance(v, str) or not is_hub_id(v)]
        if bad:
            problems.append(f"metadata `{key}` has entries that are not Hub ids: {bad}")
    sections = _sections(text)
    for name in REQUIRED_SECTIONS:
        if name not in sections:
            problems.append(f"section '## {name}' is missing")
        elif not sections[name].strip():
            problems.append(f"section '## {name}' is empty")
    if problems:
        raise ValueError("Invalid model card:\n" + "\n".join(f"  - {p}" for p in problems))
    return card


def write_model_card(model_dir: str | Path, **kwargs) -> Path:
    """Render the card for `model_dir` (see `render_model_card`) and write it to `model_dir/README.md`."""
    card = render_model_card(model_dir, **kwargs)
    path = Path(model_dir) / "README.md"
    path.write_text(str(card), encoding="utf-8")
    logger.info("Wrote the model card to %s", path)
    return path
