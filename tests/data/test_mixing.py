"""Seeded mixing of stage datasets by counts, weights and tokens; what cannot be met raises or is reported."""

import logging

import datasets
import numpy as np
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
        "mode": "count", "requested": 25, "requested_tokens": None, "available": 30, "available_tokens": None,
        "taken": 25, "taken_tokens": None, "token_share": None, "unused": 5, "repeated": 0, "shortfall_rows": 0,
        "shortfall_tokens": 0, "with_replacement": False, "weight": None, "token_weight": None,
    }
    assert set(mixed["source"]) == {"general", "medical"}


def test_oversampling_warns_and_repeats_every_row():
    small = _ds("s", 4)
    with pytest.warns(UserWarning, match="repeated"):
        mixed, report = mix_sources([MixSource(small, "small", count=10, allow_repeat=True)], seed=0)
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


def _lengths(n, seed, low=20, high=400):
    return np.random.default_rng(seed).integers(low, high, n).tolist()


def test_token_weights_deliver_token_shares_within_one_percent():
    general, captions = _ds("g", 3000), _ds("c", 2000)
    g_len, c_len = _lengths(3000, 0), _lengths(2000, 1, 100, 900)  # captions are longer rows
    mixed, report = mix_sources([MixSource(general, "general", token_weight=5, lengths=g_len),
                                 MixSource(captions, "captions", token_weight=1, lengths=c_len)], seed=0)
    g, c = report["sources"]["general"], report["sources"]["captions"]
    assert abs(g["taken_tokens"] / report["total_tokens"] - 5 / 6) < 0.01
    assert abs(c["token_share"] - 1 / 6) < 0.01
    assert g["taken"] == 3000 and g["unused"] == 0  # the limiting source is taken whole, nothing repeats
    assert c["unused"] == 2000 - c["taken"] > 0 and not c["with_replacement"]
    by_id = dict(zip([f"c{i}" for i in range(2000)], c_len)) | dict(zip([f"g{i}" for i in range(3000)], g_len))
    assert sum(by_id[i] for i in mixed["id"]) == report["total_tokens"]  # the report counts the rows delivered


def test_token_budget_and_total_tokens_after_counted_rows():
    a, b, c = _ds("a", 500), _ds("b", 500), _ds("c", 40)
    la, lb, lc = _lengths(500, 2), _lengths(500, 3), _lengths(40, 4)
    _, report = mix_sources([MixSource(a, "a", tokens=20_000, lengths=la)], seed=0)
    assert abs(report["sources"]["a"]["taken_tokens"] - 20_000) / 20_000 < 0.01
    _, report = mix_sources([MixSource(a, "a", token_weight=1, lengths=la),
                             MixSource(b, "b", token_weight=3, lengths=lb),
                             MixSource(c, "c", count=40, lengths=lc)], seed=0, total_tokens=60_000)
    rows = report["sources"]
    assert rows["c"]["taken"] == 40
    assert rows["a"]["requested_tokens"] + rows["b"]["requested_tokens"] == 60_000 - rows["c"]["taken_tokens"]
    assert abs(report["total_tokens"] - 60_000) / 60_000 < 0.01
    assert abs(rows["b"]["taken_tokens"] / (rows["a"]["taken_tokens"] + rows["b"]["taken_tokens"]) - 0.75) < 0.01


def test_unmeetable_mix_raises_naming_the_source():
    small = _ds("s", 4)
    with pytest.raises(ValueError, match="'small'.*allow_repeat"):
        mix_sources([MixSource(small, "small", count=10)], seed=0)
    with pytest.raises(ValueError, match="'small'.*tokens"):
        mix_sources([MixSource(small, "small", tokens=1000, lengths=[10] * 4)], seed=0)
    with pytest.raises(ValueError, match="'b'"):  # the weighted share of `total` is more than b holds
        mix_sources([MixSource(_ds("a", 100), "a", weight=1), MixSource(_ds("b", 10), "b", weight=1)], seed=0, total=60)
    with pytest.raises(ValueError, match="'b'"):
        mix_sources([MixSource(_ds("a", 100), "a", token_weight=1, lengths=[10] * 100),
                     MixSource(_ds("b", 10), "b", token_weight=1, lengths=[10] * 10)], seed=0, total_tokens=1000)


def test_allow_shortfall_takes_every_row_and_reports_it():
    small = _ds("s", 4)
    with pytest.warns(UserWarning, match="allow_shortfall"):
        mixed, report = mix_sources([MixSource(small, "small", count=10, allow_shortfall=True)], seed=0)
    r = report["sources"]["small"]
    assert len(mixed) == 4 and (r["requested"], r["taken"], r["shortfall_rows"], r["repeated"]) == (10, 4, 6, 0)
    with pytest.warns(UserWarning, match="allow_shortfall"):
        _, report = mix_sources([MixSource(small, "small", tokens=100, lengths=[10] * 4, allow_shortfall=True)], seed=0)
    r = report["sources"]["small"]
    assert (r["taken_tokens"], r["shortfall_tokens"]) == (40, 60)


def test_allow_repeat_by_tokens_repeats_rows_and_reports_it():
    small = _ds("s", 4)
    with pytest.warns(UserWarning, match="repeated"):
        mixed, report = mix_sources([MixSource(small, "small", tokens=100, lengths=[10] * 4, allow_repeat=True)],
                                    seed=0)
    r = report["sources"]["small"]
    assert (r["taken"], r["taken_tokens"], r["repeated"], r["unused"]) == (10, 100, 6, 0) and r["with_replacement"]
    assert sorted(mixed["id"].count(i) for i in small["id"]) == [2, 2, 3, 3]
    with pytest.warns(UserWarning, match="repeated"):  # exactly two passes: no extra row
        _, report = mix_sources([MixSource(small, "small", tokens=80, lengths=[10] * 4, allow_repeat=True)], seed=0)
    assert (report["sources"]["small"]["taken"], report["sources"]["small"]["taken_tokens"]) == (8, 80)


def test_rows_left_out_by_a_ratio_are_reported_and_logged(caplog):
    general, captions = _ds("g", 1000), _ds("c", 500)
    with caplog.at_level(logging.WARNING, logger="infimed.data.mixing"):
        mixed, report = mix_sources([MixSource(general, "general", weight=5),
                                     MixSource(captions, "captions", weight=1)], seed=0)
    assert len(mixed) == 1200
    assert report["sources"]["captions"]["taken"] == 200 and report["sources"]["captions"]["unused"] == 300
    assert report["sources"]["general"]["unused"] == 0
    assert "'captions': 300 of 500 rows unused" in caplog.text


def test_token_mode_inputs_checked():
    with pytest.raises(ValueError, match="lengths"):
        MixSource(_ds("a", 2), "a", token_weight=1)
    with pytest.raises(ValueError, match="`count` and `tokens`"):
        MixSource(_ds("a", 2), "a", count=1, tokens=5, lengths=[1, 1])
    with pytest.raises(ValueError, match="allow_repeat"):
        MixSource(_ds("a", 2), "a", allow_repeat=True, allow_shortfall=True)
    with pytest.raises(ValueError, match="different totals"):
        mix_sources([MixSource(_ds("a", 2), "a", weight=1),
                     MixSource(_ds("b", 2), "b", token_weight=1, lengths=[1, 1])], seed=0)
    with pytest.raises(ValueError, match="3 `lengths` for 2 rows"):
        mix_sources([MixSource(_ds("a", 2), "a", lengths=[1, 2, 3])], seed=0)
