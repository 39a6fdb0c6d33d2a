"""The InfiMed medical VQA scorer as an ``evaluate`` metric module.

    import evaluate
    from infimed.evaluation.metric import METRIC_PATH
    metric = evaluate.load(METRIC_PATH)            # offline: a local path needs no Hub
    metric.compute(predictions=["There is no effusion."], references=["no"], kinds=["yes_no"],
                   questions=["Is there a pleural effusion?"])

``infimed push-metric --repo-id ORG/NAME`` publishes it, so ``evaluate.load("ORG/NAME")`` scores the same way.
"""

from pathlib import Path

__all__ = ["METRIC_NAME", "METRIC_PATH"]

METRIC_NAME = "infimed_medvqa"
# The script `evaluate.load` reads: absolute imports only, because `evaluate` copies it out of the package.
METRIC_PATH = str(Path(__file__).with_name(f"{METRIC_NAME}.py"))
