"""Install InfiMed under the single import namespace ``infimed``.

The repository keeps the design card's top-level folders (``modeling_infimed/``, ``processing/``, ...); ``package_dir``
maps each of them below ``infimed`` so an install never squats generic names such as ``processing`` or ``training``.
"""

import os

from setuptools import setup

# import name -> folder in the repository, for the top-level packages of the design card
TOP_LEVEL = {
    "infimed": "infimed",
    "infimed.core": "core",
    "infimed.modeling": "modeling_infimed",
    "infimed.processing": "processing",
    "infimed.data": "data",
    "infimed.training": "training",
    "infimed.evaluation": "evaluation",
    "infimed.hub": "hub",
    "infimed.model_cards": "model_cards",
}


def _with_subpackages(top_level: dict[str, str]) -> dict[str, str]:
    """Add every sub-folder holding an `__init__.py` below a mapped folder (e.g. `data/curation`)."""
    mapping = dict(top_level)
    for name, folder in top_level.items():
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            if root != folder and "__init__.py" in files:
                mapping[name + "." + os.path.relpath(root, folder).replace(os.sep, ".")] = root
    return mapping


PACKAGE_DIRS = _with_subpackages(TOP_LEVEL)

# Honest ranges for library users; `make test`/`make demo` install the exact set in requirements-lock.txt and
# `make test-latest` checks the newest releases these ranges allow (docs/compatibility.md). torch and huggingface_hub
# stay loose enough for the GPU image (torch 2.11, huggingface_hub 1.33); transformers 5.23 is the first with the
# dataclass configs this package uses, and the model code follows 5.24's `past_key_values` -> `cache` rename.
INSTALL_REQUIRES = [
    "torch>=2.11",
    "transformers>=5.23,<6",
    "trl>=1.16,<2",
    "peft>=0.21",
    "datasets>=5.0",
    "huggingface_hub>=1.31,<3",
    "safetensors>=0.8",
    "evaluate>=0.4.6",
    "accelerate>=1.15",
    "pydicom>=3.0",
    "pillow>=10",
    "numpy>=1.26",
    "pyyaml>=6.0",
    "jinja2>=3.1",
    "matplotlib>=3.8",
    "tensorboard>=2.15",
    "tqdm>=4.66",
]

EXTRAS = {"dev": ["pytest>=8", "pytest-timeout>=2.3"]}

setup(
    name="infimed",
    version="0.1.0",
    description="Build, train, evaluate and publish InfiMed medical multimodal LLMs inside the Hugging Face ecosystem.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir=PACKAGE_DIRS,
    packages=list(PACKAGE_DIRS),
    # the metric's Space card travels with its module (`infimed push-metric` uploads both)
    package_data={"infimed.model_cards": ["templates/*.j2", "templates/*.md"], "infimed.evaluation.metric": ["README.md"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["infimed=infimed.cli:main"]},
)
