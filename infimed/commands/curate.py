"""``infimed curate``: score, filter, deduplicate and decontaminate training data; write parquet shards, a report,
a dataset card and a human-audit sample.

    infimed curate recipes/curation/demo.yaml --output runs/curated
    infimed curate --import-audit audit_verdicts.csv --output runs/curated   # agreement + suggested thresholds
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="Curation YAML (sources, thresholds, judge, dedup, ...).")
    parser.add_argument("--output", required=True, help="Output folder (parquet shards, report, card, audit).")
    parser.add_argument("--num-proc", type=int, default=None, help="Override `num_proc` (rule-scoring workers).")
    parser.add_argument("--import-audit", metavar="CSV", default=None,
                        help="Instead of curating: compare clinician verdicts in CSV with the scores of the run in "
                             "--output and write audit/agreement.json.")


def _import_audit(args) -> int:
    from pathlib import Path

    from infimed.data.curation import import_audit

    report_path = Path(args.output) / "curation_report.json"
    if not report_path.exists():
        raise ValueError(f"{report_path} not found: --import-audit needs the --output folder of a finished curate run.")
    thresholds = json.loads(report_path.read_text(encoding="utf-8")).get("thresholds", {})
    result = import_audit(args.import_audit, thresholds)
    out = Path(args.output) / "audit" / "agreement.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"[curate] agreement written to {out}")
    return 0


def main(args) -> int:
    if args.import_audit:
        return _import_audit(args)
    if not args.config:
        raise ValueError("Pass a curation CONFIG.yaml (or --import-audit CSV).")
    import datasets

    from infimed.data.curation import CurationConfig, run_curation

    datasets.disable_progress_bars()  # one progress line per chunk below is easier to follow than nested bars
    config = CurationConfig.from_yaml(args.config)
    if args.num_proc is not None:
        config.num_proc = args.num_proc
        config.validate()
    report = run_curation(config, args.output)
    print(f"[curate] input {report['input']} = kept {report['kept']} + dropped {report['dropped']}")
    for reason, count in report["dropped_by_reason"].items():
        print(f"[curate]   dropped {count:6d}  {reason}")
    for dim, why in report["dimensions_not_scored"].items():
        print(f"[curate] {dim}: not scored ({why})")
    print(f"[curate] wrote {args.output}/data ({len(report['output']['shards'])} shard(s)), curation_report.json, "
          f"README.md{', audit/' if report['output']['audit'] else ''} in {report['timing']['seconds']:.1f}s")
    return 0
