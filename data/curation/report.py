"""``curation_report.json``: what went in, what came out, and why everything else was dropped.

The invariant ``input == kept + sum(dropped)`` holds per source and overall; ``finalize`` refuses to write a report
that breaks it. Score histograms (10 equal bins on [0, 1]) are kept per dimension and per source over every scored
sample, kept or dropped, so a threshold can be judged against the whole distribution.
"""

from __future__ import annotations

from collections import Counter, defaultdict

__all__ = ["CurationReport", "HISTOGRAM_BINS"]

HISTOGRAM_BINS = 10  # 0.1-wide bins: fine enough to place a threshold, coarse enough to read in JSON


def _bin(score: float) -> int:
    return min(int(score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)


class CurationReport:
    def __init__(self):
        self.input = Counter()
        self.kept = Counter()
        self.dropped: dict[str, Counter] = defaultdict(Counter)  # source -> reason -> count
        self.unscored = Counter()  # judge failure reason -> samples left unscored (kept flagged or dropped)
        self.flags = Counter()  # every imperfect check, kept samples included
        self.hist: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * HISTOGRAM_BINS))
        self.not_applicable = Counter()

    def add(self, source: str, reason: str | None, scores: dict[str, float | None], flags: list[str]) -> None:
        self.input[source] += 1
        if reason is None:
            self.kept[source] += 1
        else:
            self.dropped[source][reason] += 1
        self.flags.update(flags)
        self.unscored.update(f.split(":", 1)[1] for f in flags if f.startswith("unscored:"))
        for dim, score in scores.items():
            if score is None:
                self.not_applicable[dim] += 1
            else:
                self.hist[dim][source][_bin(score)] += 1

    def finalize(self, **sections) -> dict:
        dropped_total = Counter()
        for counts in self.dropped.values():
            dropped_total.update(counts)
        n_in, n_kept = sum(self.input.values()), sum(self.kept.values())
        if n_in != n_kept + sum(dropped_total.values()):
            raise RuntimeError(f"count mismatch: input {n_in} != kept {n_kept} + dropped {sum(dropped_total.values())}")
        by_dimension = Counter(reason.split(":", 1)[0] for reason in dropped_total.elements())
        edges = [round(i / HISTOGRAM_BINS, 2) for i in range(HISTOGRAM_BINS + 1)]
        return {
            "input": n_in,
            "kept": n_kept,
            "dropped": sum(dropped_total.values()),
            "dropped_by_reason": dict(dropped_total.most_common()),
            "dropped_by_category": dict(by_dimension.most_common()),
            "unscored_by_reason": dict(self.unscored),
            "per_source": {
                s: {"input": self.input[s], "kept": self.kept[s],
                    "dropped_by_reason": dict(self.dropped[s].most_common())}
                for s in self.input
            },
            "flags": dict(self.flags.most_common()),
            "histograms": {
                "bin_edges": edges,
                "per_dimension": {
                    dim: {"all": [sum(col) for col in zip(*per.values())], "per_source": dict(per)}
                    for dim, per in self.hist.items()
                },
                "not_applicable_or_unscored": dict(self.not_applicable),
            },
            **sections,
        }
