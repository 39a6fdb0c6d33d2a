"""``infimed curate``: score, filter, deduplicate and decontaminate training data; write parquet shards, a report,
a dataset card and a human-audit sample.

    infimed curate recipes/curation/demo.yaml --output runs/curated
    infimed curate recipes/curation/demo.yaml --output runs/curated --overwrite   # replace it once the rerun is done
    infimed curate --import-audit audit_verdicts.csv --output runs/curated   # agreement + suggested thresholds
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from infimed.core.config import ConfigParser, config_from_args
from infimed.data.curation import CurationConfig, import_audit, run_curation

__all__ = ["CurateArguments", "add_arguments", "main"]


@dataclass
class CurateArguments:
    """Where `infimed curate` writes; the curation itself is a `CurationConfig` (YAML file and flags)."""

    output: str = field(metadata={"help": "Output folder (parquet shards, report, card, audit); replaced only when "
                                          "the run has finished."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier curation output in --output."})
    import_audit: str | None = field(
        default=None, metadata={"help": "Instead of curating: compare clinician verdicts in this CSV with the scores "
                                        "of the run in --output and write audit/agreement.json."}
    )


def add_arguments(parser: ConfigParser) -> None:
    parser.add_config_arguments(CurateArguments)
    parser.add_config_arguments(CurationConfig, config_file=True)


def _import_audit(args: CurateArguments) -> int:
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


def main(namespace) -> int:
    args = config_from_args(CurateArguments, namespace)
    if args.import_audit:
        return _import_audit(args)
    if not namespace.config:
        raise ValueError("Pass a curation CONFIG.yaml (or --import-audit CSV).")
    datasets.disable_progress_bars()  # one progress line per chunk below is easier to follow than nested bars
    config = config_from_args(CurationConfig, namespace, config_file=namespace.config)
    report = run_curation(config, args.output, overwrite=args.overwrite)
    print(f"[curate] input {report['input']} = kept {report['kept']} + dropped {report['dropped']}")
    for reason, count in report["dropped_by_reason"].items():
        print(f"[curate]   dropped {count:6d}  {reason}")
    for dim, why in report["dimensions_not_scored"].items():
        print(f"[curate] {dim}: not scored ({why})")
    print(f"[curate] wrote {args.output}/data ({len(report['output']['shards'])} shard(s)), curation_report.json, "
          f"README.md{', audit/' if report['output']['audit'] else ''} in {report['timing']['seconds']:.1f}s")
    return 0
