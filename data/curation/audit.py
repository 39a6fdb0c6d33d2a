"""Human audit: a stratified sample for clinicians, and agreement of their verdicts with the automatic scores.

Export (during a run): ``AuditSampler`` keeps a seeded reservoir of ``per_stratum`` samples per (source, score band),
kept AND dropped, where the band is set by the sample's worst dimension score. ``export_audit`` writes

- ``audit.csv``: one row per sample with the automatic scores and empty ``human_<dimension>`` columns (1 = acceptable,
  0 = not), plus ``human_keep`` and ``notes``;
- ``audit.html``: the same samples in one self-contained page (images inline as base64, no network), with radio
  buttons and a button that downloads the filled CSV, so a clinician can work offline in a browser.

Import: ``import_audit(csv_path, thresholds)`` compares the human verdicts with "score >= threshold" per dimension
and suggests the threshold that best agrees with the humans.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import random
from pathlib import Path

from infimed.processing.image_io import load_image

from .dimensions import DIMENSION_NAMES

__all__ = ["AuditSampler", "export_audit", "import_audit", "suggest_threshold", "AUDIT_FIELDS"]

AUDIT_FIELDS = (
    ["audit_id", "sample_id", "source", "band", "kept", "drop_reason", "kind", "question", "options", "answer", "flags"]
    + [f"score_{d}" for d in DIMENSION_NAMES]
    + [f"human_{d}" for d in DIMENSION_NAMES]
    + ["human_keep", "notes"]
)
_THUMB_SIDE = 256  # enough for a clinician to judge the picture, small enough for a page of hundreds of samples


class AuditSampler:
    """Seeded reservoir sampling per (source, band); memory is bounded by strata x per_stratum."""

    def __init__(self, config, seed: int):
        self.config = config
        self.rng = random.Random(seed)
        self.reservoirs: dict[tuple[str, str], list] = {}
        self.seen: dict[tuple[str, str], int] = {}

    def band(self, scores: dict) -> str:
        values = [v for v in scores.values() if v is not None]
        worst = min(values) if values else 1.0
        n_bands = len(self.config.bands) + 1
        names = ["low", "mid", "high"] if n_bands == 3 else [f"b{i}" for i in range(n_bands)]
        return names[sum(worst >= edge for edge in self.config.bands)]

    def offer(self, row: dict, source: str, result, reason: str | None) -> None:
        if not self.config.enabled:
            return
        key = (source, self.band(result.scores))
        n = self.seen[key] = self.seen.get(key, 0) + 1
        bucket = self.reservoirs.setdefault(key, [])
        if len(bucket) < self.config.per_stratum:
            bucket.append(self._entry(row, source, key[1], result, reason))
        else:
            j = self.rng.randrange(n)
            if j < self.config.per_stratum:
                bucket[j] = self._entry(row, source, key[1], result, reason)

    @staticmethod
    def _entry(row, source, band, result, reason) -> dict:
        return {
            "sample_id": str(row.get("id")), "source": source, "band": band, "kept": reason is None,
            "drop_reason": reason or "", "kind": row.get("kind"), "question": row.get("question"),
            "options": row.get("options") or [], "answer": row.get("answer"), "flags": list(result.flags),
            "scores": dict(result.scores), "thumbnails": [_thumbnail(obj) for obj in (row.get("images") or [])[:4]],
        }

    def entries(self) -> list[dict]:
        return [e for key in sorted(self.reservoirs) for e in self.reservoirs[key]]


def _thumbnail(obj) -> str | None:
    """A PNG data URL of the image, or None when it does not decode (the page then says so)."""
    try:
        img = load_image(obj)
    except Exception:  # noqa: BLE001 - corrupt images are exactly what auditors should see flagged
        return None
    img.thumbnail((_THUMB_SIDE, _THUMB_SIDE))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _csv_row(i: int, e: dict) -> dict:
    row = {
        "audit_id": i, "sample_id": e["sample_id"], "source": e["source"], "band": e["band"], "kept": int(e["kept"]),
        "drop_reason": e["drop_reason"], "kind": e["kind"], "question": e["question"],
        "options": json.dumps(e["options"], ensure_ascii=False), "answer": e["answer"], "flags": ";".join(e["flags"]),
        "human_keep": "", "notes": "",
    }
    for d in DIMENSION_NAMES:
        score = e["scores"].get(d)
        row[f"score_{d}"] = "" if score is None else f"{score:.4f}"
        row[f"human_{d}"] = ""
    return row


def export_audit(entries: list[dict], out_dir: str | Path, config) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_csv_row(i, e) for i, e in enumerate(entries)]
    with open(out / "audit.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=AUDIT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "audit.html").write_text(_render_html(entries, rows, config), encoding="utf-8")
    return {"csv": "audit/audit.csv", "html": "audit/audit.html", "samples": len(rows)}


def _render_html(entries: list[dict], rows: list[dict], config) -> str:
    esc = html.escape
    cards = []
    for e, row in zip(entries, rows):
        imgs = "".join(f'<img src="{t}" alt="sample image">' if t else '<div class="bad">image does not decode</div>'
                       for t in e["thumbnails"]) or "<em>text only</em>"
        opts = "".join(f"<li>{chr(65 + i)}. {esc(str(o))}</li>" for i, o in enumerate(e["options"]))
        score_cells = "".join(f"<td>{esc(row[f'score_{d}'] or '-')}</td>" for d in DIMENSION_NAMES)
        radios = "".join(
            f'<td><label><input type="radio" name="{d}-{row["audit_id"]}" value="1">ok</label>'
            f'<label><input type="radio" name="{d}-{row["audit_id"]}" value="0">bad</label></td>'
            for d in DIMENSION_NAMES
        )
        status = "kept" if e["kept"] else f"dropped ({esc(e['drop_reason'])})"
        cards.append(
            f'<section data-id="{row["audit_id"]}"><h2>#{row["audit_id"]} {esc(e["sample_id"])} '
            f'<small>{esc(e["source"])} / band {e["band"]} / {status}</small></h2><div class="imgs">{imgs}</div>'
            f'<p><b>Q ({esc(str(e["kind"]))}):</b> {esc(str(e["question"]))}</p><ol class="opts">{opts}</ol>'
            f'<p><b>A:</b> {esc(str(e["answer"]))}</p><p class="flags">{esc(", ".join(e["flags"])) or "no flags"}</p>'
            f'<table><tr><th></th>{"".join(f"<th>{d}</th>" for d in DIMENSION_NAMES)}</tr>'
            f"<tr><th>auto</th>{score_cells}</tr><tr><th>you</th>{radios}</tr></table>"
            f'<p>Keep? <label><input type="radio" name="keep-{row["audit_id"]}" value="1">yes</label>'
            f'<label><input type="radio" name="keep-{row["audit_id"]}" value="0">no</label> '
            f'Notes: <input type="text" name="notes-{row["audit_id"]}" size="60"></p></section>'
        )
    data = json.dumps(rows, ensure_ascii=False).replace("</", "<\\/")
    thresholds = ", ".join(f"{d} {config.threshold(d)}" for d in config.active_dimensions)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>InfiMed curation audit</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}
section{{border:1px solid #ccc;padding:8px;margin:12px 0}}
.imgs img{{max-height:256px;margin-right:6px;image-rendering:pixelated}}.bad{{color:#b00}}.flags{{color:#666}}
td,th{{padding:2px 6px;font-size:90%}}</style></head><body>
<h1>InfiMed curation audit ({len(rows)} samples)</h1>
<p>For each sample mark every dimension <b>ok</b> (acceptable for training) or <b>bad</b>, then press the button and
send the downloaded <code>audit_verdicts.csv</code> back. Scores are in [0, 1]; thresholds in this run: {thresholds}.
Dimension definitions: <code>infimed.data.curation.dimensions</code>.</p>
<button onclick="download()">Download verdicts CSV</button>
{''.join(cards)}
<button onclick="download()">Download verdicts CSV</button>
<script>
const ROWS = {data};
const FIELDS = {json.dumps(AUDIT_FIELDS)};
const DIMS = {json.dumps(list(DIMENSION_NAMES))};
function pick(name) {{
  const el = document.querySelector('input[name="' + name + '"]:checked');
  return el ? el.value : "";
}}
function cell(v) {{ v = String(v ?? ""); return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }}
function download() {{
  const lines = [FIELDS.join(",")];
  for (const r of ROWS) {{
    for (const d of DIMS) r["human_" + d] = pick(d + "-" + r.audit_id);
    r.human_keep = pick("keep-" + r.audit_id);
    r.notes = document.querySelector('input[name="notes-' + r.audit_id + '"]').value;
    lines.push(FIELDS.map(f => cell(r[f])).join(","));
  }}
  const blob = new Blob([lines.join("\\n") + "\\n"], {{type: "text/csv"}});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = "audit_verdicts.csv"; a.click();
}}
</script></body></html>
"""


def suggest_threshold(scores: list[float], verdicts: list[int]) -> tuple[float, float]:
    """Threshold t (keep when score >= t) maximising agreement with the human verdicts, and that agreement.
    Candidates are midpoints between distinct scores plus the ends; ties go to the lower threshold (keeps more)."""
    values = sorted(set(scores))
    candidates = [0.0] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6 if values else 1.0]
    best_t, best_agree = 0.0, -1.0
    for t in candidates:
        agree = sum((s >= t) == bool(v) for s, v in zip(scores, verdicts)) / len(scores)
        if agree > best_agree + 1e-12:
            best_t, best_agree = t, agree
    return round(min(best_t, 1.0), 4), best_agree


def _kappa(auto: list[int], human: list[int]) -> float | None:
    n = len(auto)
    observed = sum(a == h for a, h in zip(auto, human)) / n
    p_auto, p_human = sum(auto) / n, sum(human) / n
    expected = p_auto * p_human + (1 - p_auto) * (1 - p_human)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


def import_audit(csv_path: str | Path, thresholds: dict[str, float]) -> dict:
    """Agreement per dimension between human verdicts (1/0, blanks skipped) and ``score >= threshold``."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    missing = [f for f in ("sample_id",) + tuple(f"human_{d}" for d in DIMENSION_NAMES) if rows and f not in rows[0]]
    if missing:
        raise ValueError(f"{csv_path} lacks columns {missing}; import the CSV written by `export_audit`.")
    result = {"samples": len(rows), "dimensions": {}}
    for d in DIMENSION_NAMES:
        pairs = []
        for r in rows:
            human, score = r.get(f"human_{d}", "").strip(), r.get(f"score_{d}", "").strip()
            if human == "" or score == "":
                continue
            if human not in ("0", "1"):
                raise ValueError(
                    f"{csv_path}: sample {r.get('sample_id')} has human_{d}={human!r}; use 1 (ok) or 0 (bad)."
                )
            pairs.append((float(score), int(human)))
        if not pairs:
            result["dimensions"][d] = {"n": 0}
            continue
        scores, verdicts = [p[0] for p in pairs], [p[1] for p in pairs]
        current = float(thresholds.get(d, 0.5))
        auto = [int(s >= current) for s in scores]
        suggested, agree_suggested = suggest_threshold(scores, verdicts)
        result["dimensions"][d] = {
            "n": len(pairs),
            "threshold": current,
            "agreement": sum(a == h for a, h in zip(auto, verdicts)) / len(pairs),
            "cohen_kappa": _kappa(auto, verdicts),
            "human_ok_rate": sum(verdicts) / len(pairs),
            "suggested_threshold": suggested,
            "agreement_at_suggested": agree_suggested,
        }
    return result
