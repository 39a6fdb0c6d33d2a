"""Seeded mixing of stage datasets by counts and weights."""

import datasets
import pytest

from infimed.data.mixing import MixSource, allocate_counts, mix_sources


def _ds(prefix, n, with_source=False):
    data = {"id": [f"{prefix}{i}" for i in range(n)], "question": [f"q {prefix} {i}" for i in range(n)]}
    if with_source:
        data["source"] = [prefix] * n
    return datasets.Dataset.from_dict(data)


def test_counts_without_replacement_and_seeded():
    general, medical = _ds("g", 50), _ds("m", 30)
    srcs = [MixSource(general, "general", count=10), MixSource(medical, "medical", count=25)]
    mixed, report = mix_sources(srcs, seed=3)
    again, _ = mix_sources(srcs, seed=3)
    other, _ = mix_sources(srcs, seed=4)
    assert len(mixed) == 35 and report["total"] == 35
    ids = mixed["id"]
    assert ids == again["id"] and ids != other["id"]
    assert len(set(ids)) == 35  # no repeats without replacement
    assert sum(i.startswith("g") for i in ids) == 10
    assert report["sources"]["medical"] == {
        "requested": 25, "available": 30, "taken": 25, "with_replacement": False, "weight": None
    }
    assert set(mixed["source"]) == {"general", "medical"}


def test_oversampling_warns_and_repeats_every_row():
    small = _ds("s", 4)
    with pytest.warns(UserWarning, match="repeated"):
        mixed, report = mix_sources([MixSource(small, "small", count=10)], seed=0)
    assert len(mixed) == 10 and report["sources"]["small"]["with_replacement"]
    counts = {i: mixed["id"].count(i) for i in small["id"]}
    assert all(c in (2, 3) for c in counts.values())  # 2 full repeats + 2 drawn without replacement


def test_weights_split_total_after_counts():
    a, b, c = _ds("a", 100), _ds("b", 100), _ds("c", 20)
    mixed, report = mix_sources(
        [MixSource(a, "a", weight=3), MixSource(b, "b", weight=1), MixSource(c, "c", count=20)], seed=1, total=60
    )
    assert len(mixed) == 60
    assert (report["sources"]["a"]["taken"], report["sources"]["b"]["taken"], report["sources"]["c"]["taken"]) == (
        30, 10, 20
    )


def test_weights_without_total_never_repeat():
    a, b = _ds("a", 40), _ds("b", 10)
    mixed, report = mix_sources([MixSource(a, "a", weight=1), MixSource(b, "b", weight=1)], seed=0)
    assert report["sources"]["b"]["taken"] == 10 and report["sources"]["a"]["taken"] == 10
    assert not any(s["with_replacement"] for s in report["sources"].values())


def test_existing_source_column_kept_and_whole_source_default():
    a = _ds("a", 5, with_source=True)
    mixed, report = mix_sources([MixSource(a, "renamed")], seed=0)
    assert set(mixed["source"]) == {"a"} and report["sources"]["renamed"]["taken"] == 5


def test_allocate_counts_sums_to_total():
    for total in (0, 1, 7, 100):
        assert sum(allocate_counts([0.2, 0.3, 0.5], total)) == total


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="both"):
        MixSource(_ds("a", 1), "a", weight=1.0, count=1)
    with pytest.raises(ValueError, match="weight"):
        MixSource(_ds("a", 1), "a", weight=-1)
    with pytest.raises(ValueError, match="unique"):
        mix_sources([MixSource(_ds("a", 2), "x"), MixSource(_ds("b", 2), "x")], seed=0)
    with pytest.raises(ValueError, match="smaller"):
        mix_sources([MixSource(_ds("a", 5), "a", count=5), MixSource(_ds("b", 5), "b", weight=1)], seed=0, total=3)
    with pytest.raises(ValueError, match="empty"):
        mix_sources([MixSource(_ds("a", 0), "a", count=2)], seed=0)
    with pytest.raises(ValueError, match="columns"):
        mix_sources([MixSource(_ds("a", 2), "a"), MixSource(datasets.Dataset.from_dict({"z": [1.5]}), "z")], seed=0)
