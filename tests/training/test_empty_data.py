"""A stage left with no training sample (a `where` that selects nothing, every row dropped) raises one error that
names the stage and counts the rows by reason, before any training step."""

import datasets
import pytest

from infimed.training.recipe import recipe_from_dict, run_recipe
from infimed.training.stages import EmptyDataError
from tests.training.test_sft import make_vqa_dataset

ROWS = 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "vqa"
    datasets.DatasetDict({"train": make_vqa_dataset(ROWS, seed=3)}).save_to_disk(str(path))
    return str(path)


def _run(tmp_path, data_dir, stage_type="sft", where=None, **keys):
    stage = {"name": "stage-x", "type": stage_type, "datasets": [{"path": data_dir, "where": where}],
             "num_image_tokens": 4, "max_steps": 1, "report_to": [], **keys}
    return run_recipe(recipe_from_dict({"model": "tiny", "output_dir": str(tmp_path / "run"), "stages": [stage]}))


def test_a_where_that_selects_nothing_names_stage_dataset_and_values(tmp_path, data_dir):
    with pytest.raises(EmptyDataError, match=rf"Stage 'stage-x': dataset '.*vqa': `where: {{'id': \['S0'\]}}` "
                                             rf"selects 0 of {ROWS} rows; the rows hold {{'id': \['s0', "):
        _run(tmp_path, data_dir, where={"id": ["S0"]})


def test_every_sft_row_dropped_gives_the_counts_by_reason(tmp_path, data_dir):
    with pytest.raises(EmptyDataError, match=rf"Stage 'stage-x': no training sample left: {ROWS} loaded, all "
                                             rf"dropped \(by reason: too_long: {ROWS}\)"):
        _run(tmp_path, data_dir, max_length=8)  # no sample fits 8 tokens
    assert not (tmp_path / "run" / "stage-x" / "model.safetensors").exists()


def test_every_grpo_row_dropped_gives_the_counts_by_reason(tmp_path, data_dir):
    # make_vqa_dataset has no `answer` column: the accuracy reward can verify none of its rows
    with pytest.raises(EmptyDataError, match=rf"Stage 'stage-x': no training sample left: {ROWS} loaded, all "
                                             rf"dropped \(by reason: empty_answer: {ROWS}\)"):
        _run(tmp_path, data_dir, stage_type="grpo", max_length=512, per_device_train_batch_size=2,
             num_generations=2, max_completion_length=4)
