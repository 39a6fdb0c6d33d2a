"""The demo's final summary: a table per stage, `results.json`, a loss curve per stage and the results chart.

The InfiMed-RL chain (CoT-SFT then GRPO, `recipes/demo-rl.yaml`) gets its own `rl` entry in `results.json`: format
compliance after CoT-SFT, accuracy per question kind before and after GRPO, and the GRPO reward curve. Its format
goal joins the Foundation ones in `goals` (`rl_goals_for`); whether GRPO kept the closed kinds' accuracy is reported in
`rl.checks` (`rl_checks_for`) and does not set the exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

from infimed.core.tasks import CHOICE_KINDS, RECORD_KINDS, SCORED_KINDS, QuestionKind

__all__ = ["GOAL_MARGINS", "RL_EVAL_PREFIX", "RL_FORMAT_GOAL", "RL_NOT_WORSE_KINDS", "goals_for", "rl_checks_for",
           "rl_goals_for", "rl_summary", "write_summary"]

# The demo data's kinds that get an accuracy (captions have no string-matchable answer).
KINDS = tuple(k for k in RECORD_KINDS if k in SCORED_KINDS)
# The demo's goal: final held-out accuracy >= chance + margin, per question kind. Closed questions by 20 points; open
# answers by 10 (they are a small share of the data, and the closed-question stages must not erase them).
GOAL_MARGINS: dict[str, float] = {**{kind: 0.20 for kind in CHOICE_KINDS}, QuestionKind.OPEN.value: 0.10}
# The RL chain's goal: the CoT-SFT model writes the <think>/<answer> layout (>= 90% of held-out answers). Its check
# that GRPO does not lower held-out accuracy on the closed kinds (it is trained on those) is reported under `rl_checks`
# but does not set the exit status: on the ~1M-parameter model GRPO's held-out change is a few items whose sign
# depends on the seed and the machine (measured, docs/demo.md), so a gate on it would fail at random.
RL_FORMAT_GOAL = 0.9
RL_NOT_WORSE_KINDS = tuple(CHOICE_KINDS)
# Held-out results of an RL-chain stage live in OUTPUT/eval/rl-<stage>/ (and its table row is `rl-<stage>`), apart
# from the Foundation stages': a folder from an older demo whose Foundation recipe had a `grpo` stage is never reused.
RL_EVAL_PREFIX = "rl-"


def goals_for(final: dict[str, float], chance: dict[str, float]) -> dict[str, bool]:
    """Per goal kind, whether the final accuracy reaches chance + its margin (a kind with no figure fails)."""
    return {kind: final.get(kind, 0.0) >= chance.get(kind, 1.0) + margin for kind, margin in GOAL_MARGINS.items()}


def rl_goals_for(rl: dict) -> dict[str, bool]:
    """The RL chain's goal from an `rl` entry: format compliance after CoT-SFT (a missing figure fails)."""
    compliance = rl.get("format_compliance_after_cot_sft")
    return {"rl_format_compliance": compliance is not None and compliance >= RL_FORMAT_GOAL}


def rl_checks_for(rl: dict) -> dict[str, bool]:
    """Reported, not gating: held-out accuracy after GRPO >= before it, per closed kind (a missing figure fails)."""
    before, after = rl.get("accuracy_before_grpo", {}), rl.get("accuracy_after_grpo", {})
    return {f"rl_grpo_not_worse_{kind}": kind in before and kind in after and after[kind] >= before[kind]
            for kind in RL_NOT_WORSE_KINDS}


def goal_text(with_rl: bool = False) -> str:
    text = "final accuracy >= chance + margin: " + ", ".join(f"{k} +{m:.2f}" for k, m in GOAL_MARGINS.items())
    if with_rl:
        text += f"; RL: format compliance after CoT-SFT >= {RL_FORMAT_GOAL}"
    return text


def _format_compliance(metrics: dict) -> float | None:
    """Share of scored-kind answers (yes/no, multiple choice, open) in the <think>/<answer> layout."""
    shares = metrics.get("format_compliance", {}).get("by_kind", {})
    counts = {k: metrics.get("by_kind", {}).get(k, {}).get("num_items", 0) for k in KINDS if k in shares}
    total = sum(counts.values())
    return sum(shares[k] * n for k, n in counts.items()) / total if total else None


def rl_summary(out: Path, rl_train_dir: Path, sft_label: str = "cot-sft", grpo_label: str = "grpo") -> dict:
    """The `rl` entry of results.json from OUTPUT/eval/<label>/results.json and the RL recipe's summary."""
    sft, grpo = _demo_metrics(out, RL_EVAL_PREFIX + sft_label), _demo_metrics(out, RL_EVAL_PREFIX + grpo_label)

    def accuracy(metrics: dict) -> dict[str, float]:
        return {k: v["accuracy"] for k, v in metrics.get("by_kind", {}).items() if k in KINDS}

    info = _stage_summaries(rl_train_dir).get(grpo_label, {})
    history = _log_history(info, rl_train_dir / grpo_label)
    return {
        "format_compliance_after_cot_sft": _format_compliance(sft),
        "format_compliance_after_grpo": _format_compliance(grpo),
        "accuracy_before_grpo": accuracy(sft),
        "accuracy_after_grpo": accuracy(grpo),
        "reward_curve": info.get("reward_curve"),
        "reward_per_step": [{k: h[k] for k in h if k == "step" or k == "reward" or k.startswith("rewards/")}
                            for h in history if "reward" in h],
    }


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
        # A GRPO stage logs both: its loss is ~0 by construction (zero-mean advantages), the reward is its curve.
        key = "reward" if any("reward" in h for h in history) else "loss"
        series = {key: [(h["step"], h[key]) for h in history if key in h and "step" in h]}
        if key == "reward":  # each reward function's mean beside the weighted total
            names = sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")})
            series.update({n[len("rewards/"):-len("/mean")]: [(h["step"], h[n]) for h in history if n in h]
                           for n in names})
        if not series[key]:
            continue
        fig, ax = plt.subplots(figsize=(5, 3))
        for label, points in series.items():
            ax.plot(*zip(*points), marker=".", label=label)
        if len(series) > 1:
            ax.legend(fontsize=8)
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


def write_summary(out: Path, labels: list[str], train_dir: Path, seconds: dict, rl_labels: list[str] | None = None,
                  rl_train_dir: Path | None = None) -> dict:
    """Table, results.json and figures. ``rl_labels`` (e.g. ``["cot-sft", "grpo"]``, stages of ``rl_train_dir``)
    add the RL chain: its rows in the table and chart, the `rl` entry and its goals."""
    stage_info = _stage_summaries(train_dir)
    rl_labels = list(rl_labels or [])
    rl_info = _stage_summaries(rl_train_dir) if rl_train_dir is not None else {}
    per_stage, chance = {}, {}
    for label in [*labels, *(RL_EVAL_PREFIX + name for name in rl_labels)]:
        metrics = _demo_metrics(out, label)
        by_kind = metrics.get("by_kind", {})
        chance.update({k: v for k, v in metrics.get("chance", {}).items() if k in KINDS})
        is_rl = label.startswith(RL_EVAL_PREFIX) and label[len(RL_EVAL_PREFIX):] in rl_labels
        info = rl_info.get(label[len(RL_EVAL_PREFIX):], {}) if is_rl else stage_info.get(label, {})
        per_stage[label] = {
            "seconds": info.get("seconds"),
            "packing_efficiency": info.get("packing_efficiency"),
            "accuracy": {k: by_kind[k]["accuracy"] for k in KINDS if k in by_kind},
            "overall_accuracy": metrics.get("accuracy"),
        }
    final = per_stage[labels[-1]]["accuracy"] if labels else {}
    goals = goals_for(final, chance)
    rl = None
    if rl_labels:
        rl = rl_summary(out, rl_train_dir, *rl_labels)
        goals.update(rl_goals_for(rl))
        rl["checks"] = rl_checks_for(rl)
    results = {
        "accuracy": final,
        "chance_accuracy": chance,
        "per_stage": per_stage,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        "goal": goal_text(with_rl=bool(rl_labels)),
        "goals": goals,
        "goals_met": all(goals.values()),
    }
    if rl is not None:
        results["rl"] = rl
    results["figures"] = (_plot_curves(out, train_dir, labels[1:], stage_info)
                          + (_plot_curves(out, rl_train_dir, rl_labels, rl_info) if rl_labels else [])
                          + [_plot_results(out, per_stage, chance)])
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
    if rl is not None:
        def pcts(acc):
            return ", ".join(f"{k} {pct(v)}" for k, v in acc.items())

        compliance = rl["format_compliance_after_cot_sft"]
        print(f"InfiMed-RL chain: format compliance after CoT-SFT {pct(compliance)}%; accuracy (%) before GRPO "
              f"{pcts(rl['accuracy_before_grpo'])}; after GRPO {pcts(rl['accuracy_after_grpo'])}")
        checks = rl["checks"]
        print(f"RL check, reported (not a goal; docs/demo.md): held-out accuracy after GRPO >= before on "
              f"{', '.join(RL_NOT_WORSE_KINDS)}: {'met' if all(checks.values()) else 'NOT met'} {checks}")
    verdict = "met" if results["goals_met"] else "NOT met"
    print(f"Goal ({results['goal']}): {verdict} {goals}")
    return results
