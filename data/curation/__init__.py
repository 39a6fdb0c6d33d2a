"""Five-dimension quality curation of medical multimodal training data (see ``dimensions`` for the definitions).

    infimed curate recipes/curation/demo.yaml --output runs/curated

Python:

    from infimed.data.curation import CurationConfig, run_curation
    report = run_curation(CurationConfig.from_yaml("curation.yaml"), "runs/curated")
"""

from .audit import export_audit, import_audit, suggest_threshold
from .config import CurationConfig, SourceConfig
from .dimensions import DIMENSION_NAMES, DIMENSIONS, MODEL_DIMENSIONS, RULE_DIMENSIONS, score_column
from .pipeline import run_curation

__all__ = [
    "CurationConfig", "SourceConfig", "run_curation", "export_audit", "import_audit", "suggest_threshold",
    "DIMENSIONS", "DIMENSION_NAMES", "RULE_DIMENSIONS", "MODEL_DIMENSIONS", "score_column",
]
