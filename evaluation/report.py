"""Result files: ``results.json`` model-index entries, a markdown table and a bar chart (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["markdown_table", "model_index", "plot_results"]

# Breakdowns worth a column in the table, when a benchmark has them.
_COLUMNS = (("closed", "closed"), ("open", "open"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def model_index(model_name: str, benchmarks: dict[str, dict], specs: dict) -> list[dict]:
    """Model-card ``model-index`` results: one entry per benchmark with accuracy (and closed/open/kind accuracies)."""
    entries = []
    for name, metrics in benchmarks.items():
        spec = specs[name]
        values = [{"type": "accuracy", "name": f"{spec.pretty} accuracy", "value": float(metrics["accuracy"])}]
        for key, label in _COLUMNS:
            if key in metrics:
                values.append({"type": "accuracy", "name": f"{spec.pretty} {label} accuracy",
                               "value": float(metrics[key]["accuracy"])})
        for lang, group in metrics.get("by_lang", {}).items():
            values.append(
                {"type": "accuracy", "name": f"{spec.pretty} ({lang}) accuracy", "value": float(group["accuracy"])}
            )
        for kind, group in metrics.get("by_kind", {}).items():
            values.append(
                {"type": "accuracy", "name": f"{spec.pretty} {kind} accuracy", "value": float(group["accuracy"])}
            )
        entries.append({
            "task": {"type": "visual-question-answering"},
            "dataset": {"name": spec.pretty, "type": spec.hub_id or name, "split": spec.split or "all"},
            "metrics": values,
        })
    return entries


def markdown_table(model_name: str, benchmarks: dict[str, dict], specs: dict) -> str:
    """One row per benchmark: items, accuracy, closed / open accuracy (percentages), unparsed, unjudged and truncated
    counts (truncated: generations that stopped at the token limit)."""
    lines = [
        f"### {model_name}",
        "",
        "| benchmark | items | accuracy | closed | open | unparsed | unjudged | truncated |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in benchmarks.items():
        closed = m.get("closed", {}).get("accuracy")
        opened = m.get("open", {}).get("accuracy")
        lines.append(
            f"| {specs[name].pretty} | {m['num_items']} | {_pct(m['accuracy'])} | {_pct(closed)} | {_pct(opened)} "
            f"| {m['unparsed']} | {m.get('unjudged', 0)} | {m.get('truncated', 0)} |"
        )
    for name, m in benchmarks.items():
        # Languages get their own rows (SLAKE en / zh), as the published tables report them.
        for lang, group in m.get("by_lang", {}).items():
            lines.append(f"| {specs[name].pretty} ({lang}) | {group['num_items']} | {_pct(group['accuracy'])} | - | - "
                         f"| {group['unparsed']} | {group.get('unjudged', 0)} | - |")
    kinds = {n: m for n, m in benchmarks.items() if m.get("chance")}
    if kinds:
        lines += ["", "| benchmark | kind | items | accuracy | chance |", "|---|---|---:|---:|---:|"]
        for name, m in kinds.items():
            for kind, group in m["by_kind"].items():
                lines.append(f"| {specs[name].pretty} | {kind} | {group['num_items']} | {_pct(group['accuracy'])} "
                             f"| {_pct(group.get('chance'))} |")
    return "\n".join(lines) + "\n"


def plot_results(model_name: str, benchmarks: dict[str, dict], specs: dict, path: str | Path) -> Path:
    """A bar chart of accuracy per benchmark (and per kind with chance marks when a benchmark reports chance)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    labels, values, chances = [], [], []
    for name, m in benchmarks.items():
        pretty = specs[name].pretty
        if m.get("chance"):
            for kind, group in m["by_kind"].items():
                labels.append(f"{pretty}\n{kind}")
                values.append(100 * group["accuracy"])
                chances.append(100 * group["chance"] if "chance" in group else None)
        else:
            labels.append(pretty)
            values.append(100 * m["accuracy"])
            chances.append(None)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1), 3.6))
    bars = ax.bar(range(len(labels)), values, color="#4C72B0")
    for i, chance in enumerate(chances):
        if chance is not None:
            ax.hlines(chance, i - 0.4, i + 0.4, colors="#C44E52", linestyles="--",
                      label="chance" if i == next(j for j, c in enumerate(chances) if c is not None) else None)
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(model_name, fontsize=9)
    if any(c is not None for c in chances):
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
