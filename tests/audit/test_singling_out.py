"""Singling out (audit/attacks/singling_out.py).

Predicate logic and predicate generation on hand-sized tables with hand-worked answers (as Anonymeter's own
tests), a memorising "generator" that must be caught, independent samples that must not be, aggregates only,
seeded runs reproduce, bad inputs are refused by name.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hgan.appliance.data import load_table
from hgan.audit.attacks.singling_out import (
    EQ,
    GE,
    GT,
    ISNA,
    LE,
    LT,
    NE,
    NOTNA,
    Predicates,
    SinglingOutEvaluator,
    multivariate_predicates,
    singles_out,
    univariate_predicates,
)
from hgan.audit.estimates import residual_risk
from hgan.release.schema import Schema
from tests.conftest import DEMO, mixed_frame, mixed_schema

SENTINELS = {"marker": 4321.987, "creat": 7.654321}


def small_schema() -> Schema:
    """An integer column 0..10 (position = value / 10) and a nullable category."""
    return Schema.from_dict({"format": "hgan-schema/1", "columns": [
        {"name": "x", "type": "numeric", "lower": 0, "upper": 10, "integer": True},
        {"name": "c", "type": "categorical", "categories": ["a", "b"], "nullable": True},
    ]})


def rows(*pairs) -> pd.DataFrame:
    frame = pd.DataFrame(pairs, columns=["x", "c"])
    return frame.astype({"x": float}).assign(c=pd.Categorical(frame["c"], categories=["a", "b"]))


SYNTHETIC = rows((0, "a"), (5, "a"), (5, "b"), (10, "b"))
CONTROL = rows((1, "a"), (5, "a"), (10, "b"), (10, "a"))
NUMERIC = np.array([True, False])


def evaluate(synthetic, train, control, schema, seed=0, **kwargs):
    return SinglingOutEvaluator(synthetic, train, control, schema, np.random.default_rng(seed), **kwargs).evaluate()


def one_clause(op: int, value: float, column: int = 0) -> Predicates:
    return Predicates.build(np.array([[column]]), np.array([[op]]), np.array([[value]]))


# -- predicate logic (rule 1) -------------------------------------------------------------

VALUES = np.array([[0.0, 0.0], [0.5, 1.0], [0.5, np.nan], [1.0, 1.0], [np.nan, 0.0]])


@pytest.mark.parametrize("op,count", [(EQ, 2), (NE, 3), (LE, 3), (GE, 3), (LT, 1), (GT, 1), (ISNA, 1), (NOTNA, 4)])
def test_each_operator_by_hand(op, count):
    # column 0 is 0, .5, .5, 1, missing; != holds for the missing value (as in pandas), < and > do not
    assert one_clause(op, 0.5).counts(VALUES).tolist() == [count]


def test_conjunctions_by_hand():
    both = Predicates.build(np.array([[0, 1], [0, 1]]), np.array([[GE, EQ], [ISNA, EQ]]),
                            np.array([[0.5, 1.0], [np.nan, 0.0]]))
    assert both.counts(VALUES).tolist() == [2, 1]  # rows 1 and 3; row 4


def test_screening_does_not_change_which_predicates_single_out():
    rng = np.random.default_rng(0)
    values = np.floor(rng.random((3000, 4)) * 20) / 20
    columns = np.sort(np.argsort(rng.random((4000, 4)), axis=1)[:, :3], axis=1)
    op = rng.choice([LE, GE, EQ], size=columns.shape)
    candidates = Predicates.build(columns, op, values[rng.integers(3000, size=(4000, 1)), columns])
    expected = np.flatnonzero(candidates.counts(values) == 1)
    assert len(expected) > 10
    assert singles_out(candidates, values).tolist() == expected.tolist()


# -- the attacker's predicates (rule 2) ------------------------------------------------

def test_univariate_predicates_by_hand():
    values = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [1.0, 1.0], [0.7, np.nan]])
    predicates, singled = univariate_predicates(values, NUMERIC)
    found = {(int(c), float(lo), float(hi), bool(ng), int(r)) for c, lo, hi, ng, r in zip(
        predicates.columns[:, 0], predicates.low[:, 0], predicates.high[:, 0], predicates.negate[:, 0], singled)}
    assert found == {(0, -np.inf, 0.0, False, 0), (0, 0.0, 0.0, False, 0),   # x <= min, x == 0
                     (0, 1.0, np.inf, False, 3), (0, 1.0, 1.0, False, 3),    # x >= max, x == 1
                     (0, 0.7, 0.7, False, 4), (1, -np.inf, np.inf, True, 4)}  # x == .7, c is missing
    assert (predicates.counts(values) == 1).all()


def test_multivariate_predicates_by_hand():
    # x's median is .5: a row above it gets x >= v, others x <= v; c gets ==. Row 1 (.5, a) matches row 0 too.
    values = np.array([[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [1.0, 1.0]])
    predicates, singled = multivariate_predicates(values, NUMERIC, 2, 10, 500, np.random.default_rng(0))
    assert sorted(singled.tolist()) == [0, 2, 3]
    by_row = dict(zip(singled.tolist(), range(len(singled))))
    assert predicates.high[by_row[2]].tolist() == [0.5, 1.0] and predicates.low[by_row[2]].tolist() == [-np.inf, 1.0]
    assert predicates.low[by_row[3]].tolist() == [1.0, 1.0] and predicates.high[by_row[3]].tolist() == [np.inf, 1.0]


def test_one_predicate_per_synthetic_row():
    values = np.floor(np.random.default_rng(1).random((500, 5)) * 10) / 10
    _, singled = multivariate_predicates(values, np.ones(5, dtype=bool), 3, 1000, 20000, np.random.default_rng(0))
    assert 0 < len(singled) == len(set(singled.tolist()))


# -- the evaluator (rules 3 and 4), by hand ----------------------------------------------

def test_univariate_evaluation_by_hand():
    # predicates: one for row (0, a) (x <= 0 or x == 0) and one for (10, b) (x >= 10 or x == 10); c singles out
    # nothing. On the training rows (the synthetic rows again) both single out; on control neither does
    result = evaluate(SYNTHETIC, SYNTHETIC, CONTROL, small_schema(), mode="univariate")
    assert result.attack_id == "risk.singling_out.univariate"
    assert (result.n_attacks, result.successes_train, result.successes_control) == (2, 2, 0)
    assert result.risk == residual_risk(2, 2, 0, 2)


def test_multivariate_evaluation_by_hand():
    # predicates: x <= 0 & c == a; x <= 5 & c == b; x >= 10 & c == b. Control: only the last singles out
    result = evaluate(SYNTHETIC, SYNTHETIC, CONTROL, small_schema(), n_cols=2)
    assert result.attack_id == "risk.singling_out.multivariate"
    assert (result.n_attacks, result.successes_train, result.successes_control) == (3, 3, 1)


def test_copies_of_a_synthetic_row_are_one_record():
    doubled = pd.concat([SYNTHETIC, SYNTHETIC], ignore_index=True)
    result = evaluate(doubled, SYNTHETIC, CONTROL, small_schema(), mode="univariate")
    assert (result.n_attacks, result.successes_train) == (2, 2)


def test_the_larger_set_is_cut_to_the_size_of_the_smaller():
    result = evaluate(SYNTHETIC, pd.concat([SYNTHETIC] * 3, ignore_index=True), CONTROL, small_schema(),
                      mode="univariate")
    assert result.parameters["rows_compared"] == 4 and result.parameters["rows_train"] == 12


# -- positive and negative controls ----------------------------------------------------

@pytest.fixture(scope="module")
def rotterdam():
    schema = Schema.load(DEMO / "rotterdam.schema.toml")
    table = load_table(DEMO / "rotterdam.csv", schema)
    parts = [table.iloc[i] for i in np.array_split(np.random.default_rng(5).permutation(len(table)), 3)]
    return schema, parts


@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_copies_single_out_their_training_rows(mode):
    schema, train, control = mixed_schema(), mixed_frame(1000, 1), mixed_frame(1000, 2)
    result = evaluate(train.copy(), train, control, schema, mode=mode, n_attacks=500)
    assert result.risk.low > 0.5, result.to_dict()


@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_copies_of_rotterdam_single_out(rotterdam, mode):
    schema, (train, control, _) = rotterdam
    result = evaluate(train.copy(), train, control, schema, mode=mode, n_attacks=500)
    assert result.risk.low > 0.5, result.to_dict()


@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_independent_samples_single_out_no_one(mode):
    result = evaluate(mixed_frame(1000, 3), mixed_frame(1000, 1), mixed_frame(1000, 2), mixed_schema(), mode=mode,
                      n_attacks=500)
    assert result.risk.low == 0.0 or result.risk.value < 0.05, result.to_dict()


@pytest.mark.parametrize("mode", ["univariate", "multivariate"])
def test_disjoint_parts_of_rotterdam_single_out_no_one(rotterdam, mode):
    schema, (train, control, synthetic) = rotterdam
    result = evaluate(synthetic, train, control, schema, mode=mode, n_attacks=500)
    assert result.risk.low == 0.0 or result.risk.value < 0.05, result.to_dict()


# -- aggregates only, reproducible, refusals -------------------------------------------

def test_result_is_aggregate_only():
    schema, train = mixed_schema(), mixed_frame(300, 1)
    for name, value in SENTINELS.items():
        train.loc[:50, name] = value
    for mode in ("univariate", "multivariate"):
        text = json.dumps(evaluate(train.copy(), train, mixed_frame(300, 2), schema, mode=mode,
                                   n_attacks=200).to_dict(), allow_nan=False)
        for value in SENTINELS.values():
            assert str(value) not in text


def test_seeded_runs_reproduce():
    schema, train, control = mixed_schema(), mixed_frame(300, 1), mixed_frame(300, 2)
    runs = [evaluate(mixed_frame(300, 3), train, control, schema, seed=7, n_attacks=200) for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "bivariate"}, "mode must be one of univariate, multivariate"),
    ({"n_cols": 0}, "n_cols must be an integer from 1 to 2"),
    ({"n_cols": 3}, "n_cols must be an integer from 1 to 2"),
    ({"n_attacks": 0}, "n_attacks must be an integer of at least 1"),
    ({"max_attempts": 0}, "max_attempts must be an integer of at least 1"),
])
def test_bad_parameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SinglingOutEvaluator(SYNTHETIC, SYNTHETIC, CONTROL, small_schema(), np.random.default_rng(0), **kwargs)


def test_no_predicate_singling_out_is_refused():
    # one column at a time, every value and every one-sided range holds for two of the four rows
    synthetic = rows((0, "a"), (0, "b"), (10, "a"), (10, "b"))
    with pytest.raises(ValueError, match="synthetic: no multivariate predicate singles out"):
        evaluate(synthetic, SYNTHETIC, CONTROL, small_schema(), n_cols=1)
