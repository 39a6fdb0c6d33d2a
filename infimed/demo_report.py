"""The demo's final summary: a table per stage, `results.json`, a loss curve per stage and the results chart."""

from __future__ import annotations

import json
from pathlib import Path

from infimed.core.tasks import CHOICE_KINDS, RECORD_KINDS, SCORED_KINDS, QuestionKind

__all__ = ["GOAL_MARGINS", "goals_for", "write_summary"]

# The demo data's kinds that get an accuracy (captions have no string-matchable answer).
KINDS = tuple(k for k in RECORD_KINDS if k in SCORED_KINDS)
# The demo's goal: final held-out accuracy >= chance + margin, per question kind. Closed questions by 20 points; open
# answers by 10 (they are a small share of the data, and the closed-question stages must not erase them).
GOAL_MARGINS: dict[str, float] = {**{kind: 0.20 for kind in CHOICE_KINDS}, QuestionKind.OPEN.value: 0.10}


def goals_for(final: dict[str, float], chance: dict[str, float]) -> dict[str, bool]:
    """Per goal kind, whether the final accuracy reaches chance + its margin (a kind with no figure fails)."""
    return {kind: final.get(kind, 0.0) >= chance.get(kind, 1.0) + margin for kind, margin in GOAL_MARGINS.items()}


def goal_text() -> str:
    return "final accuracy >= chance + margin: " + ", ".join(f"{k} +{m:.2f}" for k, m in GOAL_MARGINS.items())


def _demo_metrics(out: Path, label: str) -> dict:
    path = out / "eval" / label / "results.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())["benchmarks"].get("demo", {})


def _stage_summaries(train_dir: Path) -> dict[str, dict]:
    path = train_dir / "recipe_summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    stages = summary.get("stages", summary) if isinstance(summary, dict) else summary
    if isinstance(stages, dict):
        return stages
    return {entry["name"]: entry for entry in stages}


def _log_history(stage_info: dict, stage_dir: Path) -> list[dict]:
    """Trainer log history of a stage: from recipe_summary.json, else the newest checkpoint's trainer_state.json."""
    if stage_info.get("log_history"):
        return stage_info["log_history"]
    states = sorted(stage_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name[11:]))
    return json.loads(states[-1].read_text()).get("log_history", []) if states else []


def _plot_curves(out: Path, train_dir: Path, stages: list[str], stage_info: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in stages:
        history = _log_history(stage_info.get(name, {}), train_dir / name)
        key = "loss" if any("loss" in h for h in history) else "reward"
        points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(*zip(*points), marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{name}: training {key}")
        fig.tight_layout()
        path = out / f"curve_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path.name)
    return written


def _plot_results(out: Path, per_stage: dict, chance: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(per_stage)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 3.5))
    width = 0.8 / len(KINDS)
    for k, kind in enumerate(KINDS):
        values = [per_stage[s]["accuracy"].get(kind, 0.0) for s in labels]
        ax.bar([i + k * width for i in range(len(labels))], values, width, label=kind)
        if kind in chance:
            ax.axhline(chance[kind], linestyle="--", linewidth=0.8, color=f"C{k}")
    ax.set_xticks([i + width for i in range(len(labels))], labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out accuracy (dashed: chance)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)
    plt.close(fig)
    return "results.png"


def write_summary(out: Path, labels: list[str], train_dir: Path, seconds: dict) -> dict:
    stage_info = _stage_summaries(train_dir)
    per_stage, chance = {}, {}
    for label in labels:
        metrics = _demo_metrics(out, label)
        by_kind = metrics.get("by_kind", {})
        chance.update({k: v for k, v in metrics.get("chance", {}).items() if k in KINDS})
        info = stage_info.get(label, {})
        per_stage[label] = {
            "seconds": info.get("seconds"),
            "packing_efficiency": info.get("packing_efficiency"),
            "accuracy": {k: by_kind[k]["accuracy"] for k in KINDS if k in by_kind},
            "overall_accuracy": metrics.get("accuracy"),
        }
    final = per_stage[labels[-1]]["accuracy"] if labels else {}
    goals = goals_for(final, chance)
    results = {
        "accuracy": final,
        "chance_accuracy": chance,
        "per_stage": per_stage,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        "goal": goal_text(),
        "goals": goals,
        "goals_met": all(goals.values()),
    }
    results["figures"] = _plot_curves(out, train_dir, labels[1:], stage_info) + [_plot_results(out, per_stage, chance)]
    (out / "results.json").write_text(json.dumps(results, indent=2))

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}"

    header = "| stage | seconds | packing eff. | " + " | ".join(f"{k} acc (chance)" for k in KINDS) + " |"
    lines = [header, "|" + "---|" * (3 + len(KINDS))]
    for label, row in per_stage.items():
        cells = [f"{pct(row['accuracy'].get(k))} ({pct(chance.get(k))})" for k in KINDS]
        eff = row["packing_efficiency"]
        lines.append(f"| {label} | {row['seconds'] if row['seconds'] is not None else '-'} | "
                     f"{'-' if eff is None else f'{eff:.3f}'} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "summary.md").write_text(table + "\n")
    print("\nHeld-out accuracy per question kind (%), chance level in brackets:\n" + table)
    verdict = "met" if results["goals_met"] else "NOT met"
    print(f"Goal ({results['goal']}): {verdict} {goals}")
    return results
