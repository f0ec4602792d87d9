"""Attribute inference (audit/attacks/inference.py).

Known answers on three-row tables, a memorising "generator" that must be caught, independent samples that must
not be, aggregates only, seeded runs reproduce, bad inputs are refused by name.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hgan.audit.attacks.inference import ATTACK_ID_PREFIX, InferenceEvaluator
from hgan.audit.estimates import residual_risk
from hgan.release.schema import Schema
from tests.audit.test_membership import noisy_copies
from tests.conftest import mixed_frame, mixed_schema

SENTINELS = {"marker": 4321.987, "creat": 7.654321}


def small_schema() -> Schema:
    """Two integer columns 0..10 (position = value / 10) and a nullable category."""
    return Schema.from_dict({"format": "hgan-schema/1", "columns": [
        {"name": "a", "type": "numeric", "lower": 0, "upper": 10, "integer": True},
        {"name": "b", "type": "numeric", "lower": 0, "upper": 10, "integer": True},
        {"name": "c", "type": "categorical", "categories": ["x", "y"], "nullable": True},
    ]})


def rows(*triples) -> pd.DataFrame:
    frame = pd.DataFrame(triples, columns=["a", "b", "c"])
    return frame.astype({"a": float, "b": float}).assign(c=pd.Categorical(frame["c"], categories=["x", "y"]))


SYNTHETIC = rows((0, 0, "x"), (5, 5, "y"), (10, 10, None))
TRAIN = rows((1, 0, "x"), (6, 5, "y"), (9, 8, "x"))
CONTROL = rows((4, 7, "x"), (10, 10, None), (0, 3, "y"))


def evaluate(synthetic, train, control, schema, seed=0, **kwargs):
    return InferenceEvaluator(synthetic, train, control, schema, np.random.default_rng(seed), **kwargs).evaluate()


# -- known answers ------------------------------------------------------------------

def test_categorical_secret_by_hand():
    # nearest synthetic row on (a, b): train -> rows 0, 1, 2 (guesses x, y, missing): 2 right;
    # control -> rows 1, 2, 0 (guesses y, missing, x): 1 right (missing = missing)
    (result,) = evaluate(SYNTHETIC, TRAIN, CONTROL, small_schema(), secrets=["c"])
    assert result.attack_id == "risk.inference.c" and result.parameters["aux_columns"] == ["a", "b"]
    assert (result.n_attacks, result.successes_train, result.successes_control) == (3, 2, 1)
    assert result.risk == residual_risk(2, 3, 1, 3)


@pytest.mark.parametrize("tolerance,train,control", [(0.05, 2, 1), (0.2, 3, 2)])
def test_numeric_secret_within_a_share_of_the_public_range(tolerance, train, control):
    # nearest on a: train guesses b = 0, 5, 10 for 0, 5, 8; control guesses 5, 10, 0 for 7, 10, 3
    (result,) = evaluate(SYNTHETIC, TRAIN, CONTROL, small_schema(), secrets=["b"], aux_columns=["a"],
                         tolerance=tolerance)
    assert (result.successes_train, result.successes_control) == (train, control)


def test_default_secrets_are_every_modelled_column_in_order():
    results = evaluate(SYNTHETIC, TRAIN, CONTROL, small_schema())
    assert [r.attack_id for r in results] == [ATTACK_ID_PREFIX + c for c in ("a", "b", "c")]
    assert results[1].parameters["aux_columns"] == ["a", "c"]


# -- positive and negative controls ----------------------------------------------------

def test_noisy_copies_give_secrets_away():
    schema, train, control = mixed_schema(), mixed_frame(1000, 1), mixed_frame(1000, 2)
    results = {r.attack_id: r for r in evaluate(noisy_copies(train, schema, seed=3), train, control, schema)}
    for secret in ("age", "marker", "stage", "death"):
        assert results[ATTACK_ID_PREFIX + secret].risk.low > 0.5, results[ATTACK_ID_PREFIX + secret].to_dict()


def test_independent_samples_give_nothing_away():
    results = evaluate(mixed_frame(1000, 3), mixed_frame(1000, 1), mixed_frame(1000, 2), mixed_schema())
    for result in results:
        assert result.risk.low == 0.0 or result.risk.value < 0.05, result.to_dict()


# -- aggregates only, reproducible, refusals -------------------------------------------

def test_result_is_aggregate_only():
    schema, train = mixed_schema(), mixed_frame(300, 1)
    for name, value in SENTINELS.items():
        train.loc[:50, name] = value
    text = json.dumps([r.to_dict() for r in evaluate(train.copy(), train, mixed_frame(300, 2), schema)],
                      allow_nan=False)
    for value in SENTINELS.values():
        assert str(value) not in text


def test_seeded_runs_reproduce():
    schema, train, control = mixed_schema(), mixed_frame(300, 1), mixed_frame(300, 2)
    synthetic = noisy_copies(train, schema, seed=3)
    assert evaluate(synthetic, train, control, schema, seed=7) == evaluate(synthetic, train, control, schema, seed=7)


@pytest.mark.parametrize("kwargs,message", [
    ({"secrets": ["c"], "aux_columns": ["a", "c"]}, "the secret 'c' is among"),
    ({"secrets": ["weight"]}, r"secrets: \['weight'\] are not modelled columns"),
    ({"secrets": []}, "no column named"),
    ({"secrets": "c"}, "expected a list of column names"),
    ({"tolerance": 1.0}, r"tolerance must be in \[0, 1\)"),
    ({"n_attacks": 4}, "train holds 3 rows"),
])
def test_bad_parameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InferenceEvaluator(SYNTHETIC, TRAIN, CONTROL, small_schema(), np.random.default_rng(0), **kwargs)
