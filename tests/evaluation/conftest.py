"""Shared evaluation fixtures: demo benchmark folders of a given size, built once per session."""

import pytest


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """``demo_data(num_eval)``: a folder holding ``infimed demo-data`` with ``num_eval`` held-out items (seed 0)."""
    from infimed.data.demo import DemoDataConfig, build_demo_dataset

    built = {}

    def make(num_eval: int):
        if num_eval not in built:
            path = tmp_path_factory.mktemp(f"demo{num_eval}")
            build_demo_dataset(DemoDataConfig(num_samples=4, num_eval=num_eval, seed=0)).save_to_disk(str(path))
            built[num_eval] = path
        return built[num_eval]

    return make
