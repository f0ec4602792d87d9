"""Linkability (audit/attacks/linkability.py) and the shared rows and neighbour search (audit/attacks/_neighbours.py).

Known answers on four-row tables, a memorising "generator" that must be caught, independent samples that must
not be, and the shared rules: aggregates only, seeded runs reproduce, bad inputs are refused by name.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hgan.audit.attacks._neighbours import Rows, nearest
from hgan.audit.attacks.linkability import ATTACK_ID, LinkabilityEvaluator, _linked, default_aux_columns
from hgan.audit.estimates import residual_risk, wilson
from hgan.release.schema import Schema
from tests.audit.test_membership import noisy_copies
from tests.conftest import mixed_frame, mixed_schema

SENTINELS = {"marker": 4321.987, "creat": 7.654321}  # distinctive values no aggregate can equal by chance


def two_column_schema() -> Schema:
    """Two integer columns 0..10: one code per integer, so the position is value / 10 exactly."""
    return Schema.from_dict({"format": "hgan-schema/1", "columns": [
        {"name": "a", "type": "numeric", "lower": 0, "upper": 10, "integer": True},
        {"name": "b", "type": "numeric", "lower": 0, "upper": 10, "integer": True},
    ]})


def rows(*pairs: tuple[int, int]) -> pd.DataFrame:
    return pd.DataFrame(pairs, columns=["a", "b"]).astype(float)


SYNTHETIC = rows((0, 0), (3, 7), (6, 3), (10, 10))


def evaluate(synthetic, train, control, schema, seed=0, **kwargs):
    return LinkabilityEvaluator(synthetic, train, control, schema, np.random.default_rng(seed), **kwargs).evaluate()


# -- known answers ------------------------------------------------------------------

def test_links_are_shared_neighbours():
    a = np.array([[0, 1], [2, 3], [4, 5]])
    b = np.array([[1, 9], [9, 8], [7, 4]])
    assert _linked(a, b).tolist() == [True, False, True]


def test_four_rows_by_hand():
    # a target is linked when its nearest synthetic row on a and its nearest on b are the same row
    train = rows((0, 1),    # a -> row 0, b -> row 0: linked
                 (6, 8),    # a -> row 2, b -> row 1
                 (10, 10),  # a -> row 3, b -> row 3: linked
                 (3, 3))    # a -> row 1, b -> row 2
    control = rows((1, 9),  # a -> row 0, b -> row 3
                   (9, 1),  # a -> row 3, b -> row 0
                   (3, 6),  # a -> row 1, b -> row 1: linked
                   (5, 9))  # a -> row 2, b -> row 3
    result = evaluate(SYNTHETIC, train, control, two_column_schema(), aux_columns=(["a"], ["b"]))
    assert (result.attack_id, result.n_attacks) == (ATTACK_ID, 4)
    assert (result.successes_train, result.successes_control) == (2, 1)
    assert result.risk == residual_risk(2, 4, 1, 4)
    assert result.train_rate == wilson(2, 4) and result.control_rate == wilson(1, 4)


def test_more_neighbours_link_more_by_hand():
    # (6, 8): 2 nearest on a are rows 2 and 1 (distances 0, 3); on b rows 1 and 3 (1, 2): they share row 1
    result = evaluate(SYNTHETIC, rows((6, 8)), rows((0, 10)), two_column_schema(), aux_columns=(["a"], ["b"]),
                      n_neighbours=2)
    # (0, 10): on a rows 0 and 1 (0, 3); on b rows 3 and 1 (0, 3): they share row 1
    assert (result.successes_train, result.successes_control) == (1, 1)


def test_nearest_breaks_ties_at_random():
    candidates = np.zeros((4, 1))  # four identical rows: every one is nearest
    picks = {int(nearest(np.zeros((1, 1)), candidates, 1, np.random.default_rng(s))[0, 0]) for s in range(40)}
    assert picks == {0, 1, 2, 3}


def test_rows_read_columns_as_positions_and_category_indices():
    frame = mixed_frame(3, 0)
    frame.loc[0, "age"], frame.loc[1, "creat"], frame.loc[2, "stage"] = 59.0, np.nan, np.nan
    frame.loc[0, "sex"] = "M"
    r = Rows.encode(frame, mixed_schema(), "train")
    assert r.column("age")[0] == pytest.approx((59 - 18) / (100 - 18))
    assert np.isnan(r.column("creat")[1]) and np.isnan(r.column("stage")[2])
    assert r.column("sex")[0] == 1.0  # index of "M" in the schema's categories
    assert r.features(["sex"]).shape == (3, 2) and r.features(["creat"]).shape == (3, 2)  # value + missing flag


# -- positive and negative controls ----------------------------------------------------

def test_noisy_copies_are_linked():
    schema, train, control = mixed_schema(), mixed_frame(1000, 1), mixed_frame(1000, 2)
    result = evaluate(noisy_copies(train, schema, seed=3), train, control, schema)  # measured: 0.43 [0.40, 0.46]
    assert result.risk.low > 0.3, result.to_dict()
    assert result.successes_train > 10 * max(1, result.successes_baseline)


def test_independent_samples_are_not_linked():
    schema = mixed_schema()
    result = evaluate(mixed_frame(1000, 3), mixed_frame(1000, 1), mixed_frame(1000, 2), schema)
    assert result.risk.low == 0.0 or result.risk.value < 0.05, result.to_dict()


# -- shared rules: aggregates only, reproducible, refusals -----------------------------

def test_result_is_aggregate_only():
    schema, train = mixed_schema(), mixed_frame(300, 1)
    for name, value in SENTINELS.items():
        train.loc[:50, name] = value
    result = evaluate(train.copy(), train, mixed_frame(300, 2), schema)
    text = json.dumps(result.to_dict(), allow_nan=False)
    for value in SENTINELS.values():
        assert str(value) not in text
    assert set(result.to_dict()) == {"attack_id", "n_attacks", "successes", "rates", "risk", "parameters", "notes"}


def test_seeded_runs_reproduce():
    schema, train, control = mixed_schema(), mixed_frame(300, 1), mixed_frame(300, 2)
    synthetic = noisy_copies(train, schema, seed=3)
    assert evaluate(synthetic, train, control, schema, seed=7) == evaluate(synthetic, train, control, schema, seed=7)


def test_default_sets_alternate_the_modelled_columns_and_default_attacks_fit_the_smaller_set():
    a, b = default_aux_columns(mixed_schema())
    assert a == ["age", "marker", "count", "stage"] and b == ["grade", "creat", "sex", "death"]
    result = evaluate(mixed_frame(50, 3), mixed_frame(40, 1), mixed_frame(30, 2), mixed_schema())
    assert result.n_attacks == 30 and result.parameters["columns_a"] == a


@pytest.mark.parametrize("kwargs,message", [
    ({"aux_columns": (["age"], ["age", "sex"])}, "in both A and B"),
    ({"aux_columns": ([], ["sex"])}, "at least one column"),
    ({"aux_columns": (["age"], ["weight"])}, r"\['weight'\] are not modelled columns"),
    ({"aux_columns": ("age", "sex")}, "expected a list of column names"),
    ({"n_neighbours": 0}, "n_neighbours"),
    ({"n_attacks": 31}, "control holds 30 rows"),
    ({"n_attacks": 0}, "n_attacks must be a positive integer"),
])
def test_bad_parameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinkabilityEvaluator(mixed_frame(50, 3), mixed_frame(40, 1), mixed_frame(30, 2), mixed_schema(),
                             np.random.default_rng(0), **kwargs)


def test_bad_rows_are_refused_by_set():
    schema, good = mixed_schema(), mixed_frame(20, 1)
    with pytest.raises(ValueError, match="control: columns differ"):
        LinkabilityEvaluator(good, good, good.drop(columns="age"), schema, np.random.default_rng(0))
    with pytest.raises(ValueError, match="synthetic: no rows"):
        LinkabilityEvaluator(good.iloc[:0], good, good, schema, np.random.default_rng(0))
    with pytest.raises(ValueError, match="train: expected a pandas DataFrame"):
        LinkabilityEvaluator(good, good.to_numpy(), good, schema, np.random.default_rng(0))
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        LinkabilityEvaluator(good, good, good, schema, 0)  # type: ignore[arg-type]

