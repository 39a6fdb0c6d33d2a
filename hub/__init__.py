"""Hub integration: push checkpoints and curated datasets in one checked commit, pull them back.

    from infimed.hub import check_model_folder, pull, push_dataset, push_model
"""

from .checks import check_dataset_folder, check_model_folder
from .pull import pull
from .push import push_dataset, push_metric, push_model

__all__ = ["check_dataset_folder", "check_model_folder", "pull", "push_dataset", "push_metric", "push_model"]
