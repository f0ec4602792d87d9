"""Utility figures of audit/utility.py: other-column TSTR, TVD, detection AUC, fidelity, association, per class.

Known answers on hand-made tables, and the demo tables where a figure needs a real signal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hgan.appliance.data import load_table
from hgan.audit.utility import (
    association_difference,
    association_matrix,
    column_fidelity,
    detection_auc,
    marginal_cells,
    other_column_tstr,
    per_class,
    stratified_split,
    tstr,
    tvd,
)
from hgan.release.schema import Schema
from tests.conftest import DEMO, mixed_frame, mixed_schema


def small_schema() -> Schema:
    return Schema.from_dict({
        "format": "hgan-schema/1",
        "columns": [
            {"name": "a", "type": "categorical", "categories": ["x", "y"]},
            {"name": "b", "type": "numeric", "lower": 0, "upper": 16},
            {"name": "m", "type": "numeric", "lower": 0, "upper": 15, "transform": "log", "nullable": True},
        ],
    })


def small_frame(a: list[str], b: list[float], m: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"a": pd.Categorical(a, categories=["x", "y"]), "b": b, "m": m})


def demo(table: str) -> tuple[Schema, pd.DataFrame]:
    schema = Schema.load(DEMO / f"{table}.schema.toml")
    return schema, load_table(DEMO / f"{table}.csv", schema)


# -- marginal cells and tvd --------------------------------------------------------

def test_cells_bin_numerics_over_public_bounds_log_scale_and_missing_last():
    frame = small_frame(["x", "y", "x"], [0.0, 16.0, 8.5], [3.0, np.nan, 0.0])
    (a, ia, na), (b, ib, nb), (m, im, nm) = marginal_cells(frame, small_schema())
    assert (a, na, b, nb, m, nm) == ("a", 3, "b", 17, "m", 17)
    assert ia.tolist() == [0, 1, 0]
    assert ib.tolist() == [0, 15, 8]          # 16 unit-wide bins; the upper bound is in the last one
    assert im.tolist() == [8, 16, 0]          # log1p(3) / log1p(15) = 1/2 -> bin 8; missing -> cell 16


def test_tvd_of_identical_tables_is_zero(schema):
    frame = mixed_frame(300, seed=1)
    assert tvd(frame, frame.copy(), schema, order=1) == 0.0
    assert tvd(frame, frame.sample(frac=1.0, random_state=0), schema, order=2) == pytest.approx(0.0, abs=1e-15)


def test_tvd_of_disjoint_supports_is_one():
    real = small_frame(["x", "x"], [0.5, 1.5], [0.0, 0.0])
    synthetic = small_frame(["y", "y"], [15.5, 14.5], [np.nan, np.nan])
    assert tvd(synthetic, real, small_schema(), order=1) == pytest.approx(1.0)
    assert tvd(synthetic, real, small_schema(), order=2) == pytest.approx(1.0)


def test_tvd_hand_worked():
    # a: real shares (1/2, 1/2), synthetic (3/4, 1/4) -> 1/4; b and m identical -> 0.
    real = small_frame(["x", "x", "y", "y"], [1, 1, 1, 1], [2, 2, 2, 2])
    synthetic = small_frame(["x", "x", "x", "y"], [1, 1, 1, 1], [2, 2, 2, 2])
    assert tvd(synthetic, real, small_schema(), order=1) == pytest.approx(0.25 / 3)
    # pairs (a, b), (a, m): 1/4 each; (b, m): 0.
    assert tvd(synthetic, real, small_schema(), order=2) == pytest.approx(0.5 / 3)


def test_tvd_sees_a_broken_dependence_that_one_way_marginals_miss():
    real = small_frame(["x", "y"] * 50, [1, 9] * 50, [0] * 100)
    broken = small_frame(["x", "y"] * 50, [9, 1] * 50, [0] * 100)
    assert tvd(broken, real, small_schema(), order=1) == 0.0
    assert tvd(broken, real, small_schema(), order=2) == pytest.approx(1 / 3)  # pair (a, b): TVD 1


def test_tvd_rejects_other_orders(schema, frame):
    with pytest.raises(ValueError):
        tvd(frame, frame, schema, order=3)


# -- detection ---------------------------------------------------------------------

def detection_schema() -> Schema:
    return Schema.from_dict({
        "format": "hgan-schema/1",
        "columns": [
            {"name": "x", "type": "numeric", "lower": -10, "upper": 10},
            {"name": "c", "type": "categorical", "categories": ["p", "q", "r"]},
            {"name": "y", "type": "categorical", "categories": [0, 1], "role": "target"},
        ],
    })


def detection_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(y + shift, 1.0)
    c = np.where(rng.random(n) < 0.5 + 0.2 * y, "p", rng.choice(["q", "r"], n))
    return pd.DataFrame({"x": x, "c": pd.Categorical(c, categories=["p", "q", "r"]),
                         "y": pd.Categorical(y, categories=[0, 1])})


def test_detection_of_an_independent_sample_of_the_same_distribution_is_about_half():
    real = detection_frame(1000, seed=0)
    same = detection_frame(3000, seed=1)
    assert detection_auc(same, real, detection_schema(), seed=0) == pytest.approx(0.5, abs=0.06)


def test_detection_of_a_shifted_sample_is_high():
    real = detection_frame(1000, seed=0)
    shifted = detection_frame(3000, seed=1, shift=3.0)
    assert detection_auc(shifted, real, detection_schema(), seed=0) > 0.9


def test_detection_balances_when_the_synthetic_side_is_smaller():
    # The holdout is subsampled to the synthetic size.
    real = detection_frame(3000, seed=2)
    same = detection_frame(600, seed=3)
    assert detection_auc(same, real, detection_schema(), seed=0) == pytest.approx(0.5, abs=0.08)


# -- other-column TSTR -------------------------------------------------------------

def test_other_column_tstr_eligible_columns_on_the_demo_tables():
    for table, expected in (("rotterdam", ["meno", "size", "grade", "hormon", "chemo"]),
                            ("flchain", ["sex"])):            # flchain: mgus holds 1.5% -> left out
        schema, frame = demo(table)
        train, holdout = stratified_split(frame, schema, holdout=0.2, seed=0)
        got = other_column_tstr(train, train, holdout, schema, seed=0)
        assert list(got["columns"]) == expected


def test_other_column_tstr_of_the_real_rows_against_themselves_is_one():
    schema, frame = demo("rotterdam")
    train, holdout = stratified_split(frame, schema, holdout=0.2, seed=0)
    got = other_column_tstr(train.copy(), train, holdout, schema, seed=0)
    assert got["mean_ratio"] == pytest.approx(1.0, abs=1e-12)
    for scores in got["columns"].values():
        assert scores["trtr_auroc"] > 0.55          # every scored column carries real signal


def test_other_column_tstr_drops_when_columns_are_independent():
    schema, frame = demo("rotterdam")
    train, holdout = stratified_split(frame, schema, holdout=0.2, seed=0)
    rng = np.random.default_rng(0)
    independent = pd.DataFrame({c: train[c].to_numpy()[rng.permutation(len(train))] for c in train.columns})
    got = other_column_tstr(independent, train, holdout, schema, seed=0)
    assert got["mean_ratio"] < 0.8


def test_other_column_tstr_leaves_out_rare_categories_and_the_target():
    schema = mixed_schema()      # sex, stage (nullable), death (target)
    frame = mixed_frame(400, seed=3)
    frame["sex"] = pd.Categorical(["F"] * 390 + ["M"] * 10, categories=["F", "M"])   # M: 2.5% < 5%
    got = other_column_tstr(frame, frame, frame, schema, seed=0)
    assert list(got["columns"]) == ["stage"]


# -- per-column fidelity, association, per class ------------------------------------------------

def test_fidelity_hand_worked_tvd_ks_and_missing_rates():
    real = small_frame(["x", "x", "y", "y"], [0, 1, 2, 3], [1, 2, np.nan, np.nan])
    syn = small_frame(["x", "x", "x", "y"], [10, 11, 12, 13], [1, 2, 3, np.nan])
    rows = {r["column"]: r for r in column_fidelity(real, syn, small_schema())}
    assert rows["a"]["statistic"] == "tvd" and rows["a"]["value"] == pytest.approx(0.25)
    assert rows["b"]["statistic"] == "ks" and rows["b"]["value"] == pytest.approx(1.0)  # disjoint
    assert rows["m"]["value"] == pytest.approx(1 / 3)  # {1,2} vs {1,2,3}: CDFs differ by 1/3 at 2
    assert rows["m"]["missing_real"] == 0.5 and rows["m"]["missing_synthetic"] == 0.25


def test_fidelity_of_a_column_with_no_present_value_is_none():
    real = small_frame(["x", "y"], [0, 1], [np.nan, np.nan])
    rows = {r["column"]: r for r in column_fidelity(real, real, small_schema())}
    assert rows["m"]["value"] is None and rows["b"]["value"] == 0.0


def test_association_finds_a_dependence_and_its_loss():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 16, 2000)
    a = np.where(b > 8, "y", "x")                       # a depends on b
    m = np.clip(b * 0.9 + rng.normal(0, 0.5, 2000), 0, 15)  # m increases with b
    real = small_frame(list(a), list(b), list(m))
    broken = small_frame(list(rng.permutation(a)), list(b), list(rng.permutation(m)))
    names, matrix = association_matrix(real, small_schema())
    assert names == ["a", "b", "m"] and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1)
    assert matrix[0, 1] > 0.9 and matrix[1, 2] > 0.9   # Cramer's V (binned), Spearman
    same = association_difference(real, real, small_schema())
    assert same["max_abs_difference"] == 0.0
    lost = association_difference(real, broken, small_schema())
    assert lost["mean_abs_difference"] > 0.5


def test_spearman_sign_is_kept():
    b = np.linspace(0, 16, 100)
    frame = small_frame(["x"] * 100, list(b), list(15 - b * 15 / 16))
    _, matrix = association_matrix(frame, small_schema())
    assert matrix[1, 2] == pytest.approx(-1.0)


def test_per_class_sees_a_class_conditional_difference_the_whole_table_hides():
    schema = mixed_schema()
    real = mixed_frame(2000, seed=0)
    syn = real.copy()
    # swap sex between the classes: the whole table keeps its sex share, each class loses it
    death = syn["death"].to_numpy()
    sex = np.where(death == 1, "F", "M")
    real = real.assign(sex=pd.Categorical(np.where(death == 1, "M", "F"), categories=["F", "M"]))
    syn = syn.assign(sex=pd.Categorical(sex, categories=["F", "M"]))
    rows = per_class(syn, real, real, schema, seed=0)
    assert [r["class"] for r in rows] == [0, 1]
    for r in rows:
        assert r["tvd_1way"] > 0.05 and r["detection_auc"] > 0.9
    assert sum(r["synthetic_share"] for r in rows) == pytest.approx(1.0)
    same = per_class(real, real, real, schema, seed=0)
    assert all(r["tvd_1way"] == 0.0 and r["mean_fidelity_distance"] == 0.0 for r in same)


def test_per_class_says_when_a_class_has_no_synthetic_row():
    schema = mixed_schema()
    real = mixed_frame(300, seed=0)
    syn = real[real["death"] == 0]
    rows = {r["class"]: r for r in per_class(syn, real, real, schema, seed=0)}
    assert "skipped" in rows[1] and rows[1]["synthetic_share"] == 0.0 and "tvd_1way" in rows[0]


def test_tstr_intervals_cover_the_estimate_and_are_wider_on_a_smaller_holdout():
    schema, frame = demo("rotterdam")
    train, holdout = stratified_split(frame, schema, holdout=0.3, seed=0)
    wide = tstr(train, train, holdout.iloc[:120], schema, seed=0)
    narrow = tstr(train, train, holdout, schema, seed=0)
    for t in (wide, narrow):
        low, high = t["tstr_auroc_interval"]
        assert low < t["tstr_auroc"] < high
        assert t["ratio_interval"] == [1.0, 1.0]  # the same rows on both sides: the ratio never moves
    assert np.diff(wide["tstr_auroc_interval"])[0] > 1.5 * np.diff(narrow["tstr_auroc_interval"])[0]
