"""Black-box membership inference (audit/attacks/membership.py, audit/features.py).

Positive controls (a "generator" that returns noisy copies of its training rows) must be caught;
negative controls (synthetic rows drawn independently of the members) must not.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from hgan.appliance.data import load_table
from hgan.audit.attacks import membership
from hgan.audit.attacks.membership import ATTACK_IDS, ROC_FPR_GRID, AttackResult, run_membership_attacks
from hgan.audit.features import attack_features
from hgan.audit.utility import stratified_split
from hgan.release.schema import NumericColumn, Schema
from tests.conftest import DEMO, mixed_frame, mixed_schema

DISTANCE_ATTACKS = ("mia.dcr", "mia.dcr_calibrated", "mia.monte_carlo")


def noisy_copies(frame: pd.DataFrame, schema: Schema, seed: int, scale: float = 0.01) -> pd.DataFrame:
    """A memorising "generator": every training row again, numerics moved by scale x their public range
    (on the log scale for log columns), rounded and clipped as the schema says; categories kept."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for col in schema.modelled:
        if not isinstance(col, NumericColumn):
            continue
        x = out[col.name].to_numpy(dtype=np.float64)
        if col.transform == "log":
            top = np.log1p(col.upper - col.lower)
            y = np.clip(np.log1p(x - col.lower) + rng.normal(0, scale * top, len(x)), 0, top)
            x = col.lower + np.expm1(y)
        else:
            x = x + rng.normal(0, scale * (col.upper - col.lower), len(x))
        x = np.clip(np.rint(x) if col.integer else x, col.lower, col.upper)
        out[col.name] = x
    return out


def by_id(results: list[AttackResult]) -> dict[str, AttackResult]:
    return {r.attack_id: r for r in results}


@pytest.fixture(scope="module")
def mixed_sets():
    members, non_members, reference = mixed_frame(1500, 1), mixed_frame(750, 2), mixed_frame(750, 3)
    return members, non_members, reference


@pytest.fixture(scope="module")
def mixed_positive(mixed_sets):
    members, non_members, reference = mixed_sets
    synthetic = noisy_copies(members, mixed_schema(), seed=9)
    return by_id(run_membership_attacks(synthetic, members, non_members, reference, mixed_schema(),
                                        np.random.default_rng(0), delta=1e-5))


@pytest.fixture(scope="module")
def mixed_negative(mixed_sets):
    members, non_members, reference = mixed_sets
    synthetic = mixed_frame(1500, 4)  # the same process, independent of the members
    return by_id(run_membership_attacks(synthetic, members, non_members, reference, mixed_schema(),
                                        np.random.default_rng(0), delta=1e-5))


@pytest.fixture(scope="module")
def rotterdam():
    schema = Schema.load(DEMO / "rotterdam.schema.toml")
    return schema, load_table(DEMO / "rotterdam.csv", schema)


# -- positive controls: memorisation is caught ------------------------------------

def test_noisy_copies_are_caught_by_every_attack(mixed_positive):
    for attack in DISTANCE_ATTACKS:
        assert mixed_positive[attack].auc > 0.9, attack
    assert mixed_positive["mia.domias"].auc > 0.65
    for attack in ATTACK_IDS:
        assert mixed_positive[attack].empirical_epsilon.low > 3.0, attack
    assert mixed_positive["mia.dcr"].tpr_at_fpr["0.001"] > 0.5


def test_noisy_copies_of_rotterdam_are_caught(rotterdam):
    schema, table = rotterdam
    train, holdout = stratified_split(table, schema, holdout=0.2, seed=0)
    non_members, reference = holdout.iloc[: len(holdout) // 2], holdout.iloc[len(holdout) // 2:]
    results = by_id(run_membership_attacks(noisy_copies(train, schema, seed=1), train, non_members, reference,
                                           schema, np.random.default_rng(0), delta=1e-5))
    for attack in DISTANCE_ATTACKS:
        assert results[attack].auc > 0.9, attack
        assert results[attack].empirical_epsilon.low > 3.0, attack
    assert results["mia.domias"].auc > 0.6
    assert results["mia.domias"].empirical_epsilon.low > 1.0


# -- negative controls: no membership signal, no false alarm ------------------------

def test_independent_samples_give_chance_auc_and_no_epsilon(mixed_negative):
    for attack in ATTACK_IDS:
        assert abs(mixed_negative[attack].auc - 0.5) < 0.05, attack
        assert mixed_negative[attack].empirical_epsilon.low < 0.1, attack


def test_disjoint_parts_of_rotterdam_give_chance_auc_and_no_epsilon(rotterdam):
    schema, table = rotterdam
    parts = [table.iloc[i] for i in np.array_split(np.random.default_rng(5).permutation(len(table)), 4)]
    members, non_members, reference, synthetic = parts
    for result in run_membership_attacks(synthetic, members, non_members, reference, schema,
                                         np.random.default_rng(0), delta=1e-5):
        assert abs(result.auc - 0.5) < 0.05, result.attack_id
        assert result.empirical_epsilon.low < 0.1, result.attack_id


def test_hand_sized_exact_copies_known_answer():
    members, non_members, reference = mixed_frame(4, 11), mixed_frame(4, 12), mixed_frame(4, 13)
    result = membership.dcr(members, members, non_members, reference, mixed_schema(), np.random.default_rng(0))
    assert result.auc == 1.0  # members at distance 0, non-members not
    assert result.tpr_at_fpr == {"0.01": 1.0, "0.001": 1.0}
    assert result.counts == {"tp": 2, "fn": 0, "fp": 0, "tn": 2}  # the evaluation half, 2 + 2 rows
    assert result.empirical_epsilon.value == math.inf
    # Two trials a side prove nothing: TPR_low = 0.025^(1/2) = 0.158 < FPR_high = 1 - 0.158.
    assert result.empirical_epsilon.low == 0.0


# -- the results: aggregates only, reproducible ------------------------------------------

def test_results_hold_aggregates_only(mixed_sets, mixed_positive):
    members = mixed_sets[0]
    text = json.dumps([r.to_dict() for r in mixed_positive.values()], allow_nan=False)
    fractional = [v for c in ("marker", "creat") for v in members[c].dropna() if not float(v).is_integer()]
    assert len(fractional) > 1000
    assert not [v for v in fractional if repr(float(v)) in text]
    for result in mixed_positive.values():
        assert result.roc_fpr == ROC_FPR_GRID and len(result.roc_tpr) == len(ROC_FPR_GRID)
        for value in vars(result).values():
            assert not isinstance(value, (np.ndarray, pd.DataFrame, pd.Series, list))


def test_results_name_the_rows_they_used(mixed_positive):
    result = mixed_positive["mia.dcr_calibrated"]
    assert (result.n_members, result.n_non_members, result.n_reference, result.n_synthetic) == (1500, 750, 750, 1500)
    assert "training rows" in result.notes and "holdout rows never used in training" in result.notes
    assert "reference" in result.notes
    assert set(result.to_dict()) >= {"attack_id", "auc", "tpr_at_fpr", "empirical_epsilon", "roc", "counts",
                                     "n_members", "n_non_members", "notes"}


def test_seeded_runs_reproduce_and_single_attacks_match_the_full_run(mixed_sets, mixed_positive):
    members, non_members, reference = mixed_sets
    synthetic = noisy_copies(members, mixed_schema(), seed=9)
    again = run_membership_attacks(synthetic, members, non_members, reference, mixed_schema(),
                                   np.random.default_rng(0), delta=1e-5)
    assert [r.to_dict() for r in again] == [r.to_dict() for r in mixed_positive.values()]
    single = membership.monte_carlo(synthetic, members, non_members, reference, mixed_schema(),
                                    np.random.default_rng(0), delta=1e-5)
    assert single == mixed_positive["mia.monte_carlo"]


# -- bad inputs (rule 5) -----------------------------------------------------------------

def test_empty_members_are_refused(mixed_sets):
    members, non_members, reference = mixed_sets
    with pytest.raises(ValueError, match="members: 0 rows"):
        run_membership_attacks(members, members.iloc[:0], non_members, reference, mixed_schema(),
                               np.random.default_rng(0))


def test_mismatched_columns_are_refused_by_name(mixed_sets):
    members, non_members, reference = mixed_sets
    with pytest.raises(ValueError, match=r"non-members: columns differ.*'creat'.*unexpected: \['pid'\]"):
        run_membership_attacks(members, members, non_members.drop(columns="creat").assign(pid=1), reference,
                               mixed_schema(), np.random.default_rng(0))


def test_missing_values_in_a_non_nullable_column_name_the_set(mixed_sets):
    members, non_members, reference = mixed_sets
    synthetic = members.assign(age=np.nan)
    with pytest.raises(ValueError, match="synthetic: column 'age'"):
        run_membership_attacks(synthetic, members, non_members, reference, mixed_schema(), np.random.default_rng(0))


def test_unknown_attack_ids_and_unseeded_rng_are_refused(mixed_sets):
    members, non_members, reference = mixed_sets
    with pytest.raises(ValueError, match="mia.nope"):
        run_membership_attacks(members, members, non_members, reference, mixed_schema(), np.random.default_rng(0),
                               attacks=("mia.dcr", "mia.nope"))
    with pytest.raises(TypeError, match="Generator"):
        run_membership_attacks(members, members, non_members, reference, mixed_schema(), 0)


# -- the attack space (audit/features.py) ------------------------------------------------

def test_feature_space_is_row_by_row_and_public_scaled():
    schema, frame = mixed_schema(), mixed_frame(300, 21)
    full = attack_features(frame, schema)
    assert np.array_equal(attack_features(frame.iloc[:10], schema), full[:10])  # no data-fitted scaling
    twins = frame.iloc[[0, 0]].reset_index(drop=True)
    ends = twins.assign(age=[18.0, 100.0])  # the two public bounds of age, all else equal
    x = attack_features(ends, schema)
    assert np.linalg.norm(x[0] - x[1]) == pytest.approx(1.0, abs=1e-6)
    sexes = twins.assign(sex=pd.Categorical(["F", "M"], categories=["F", "M"]))
    y = attack_features(sexes, schema)
    assert np.linalg.norm(y[0] - y[1]) == pytest.approx(1.0)


def test_identical_reference_rows_are_refused_by_the_density_attack(mixed_sets):
    members, non_members, reference = mixed_sets
    with pytest.raises(ValueError, match="reference: all rows are identical"):
        membership.domias(members, members, non_members, reference.iloc[[0] * 50], mixed_schema(),
                          np.random.default_rng(0))


# -- speed ------------------------------------------------------------------------------

def test_all_attacks_on_a_flchain_sized_35_column_table_take_seconds():
    columns = [{"name": f"x{i}", "type": "numeric", "lower": 0, "upper": 100, "integer": i % 5 == 0,
                "transform": "log" if i % 3 == 0 else "none", "nullable": i % 4 == 0} for i in range(20)]
    columns += [{"name": f"c{i}", "type": "categorical", "categories": list(range(2 + i % 5)),
                 "nullable": i % 3 == 0} for i in range(14)]
    columns.append({"name": "y", "type": "categorical", "categories": [0, 1], "role": "target"})
    schema = Schema.from_dict({"format": "hgan-schema/1", "columns": columns})
    rng = np.random.default_rng(0)
    n = 6300 + 1575 + 6300
    data = {}
    for col in schema.modelled:
        if isinstance(col, NumericColumn):
            x = np.clip(rng.normal(50, 20, n), 0, 100)
            data[col.name] = np.where(rng.random(n) < 0.1, np.nan, x) if col.nullable else x
            if col.integer:
                data[col.name] = np.rint(data[col.name])
        else:
            codes = rng.integers(-1 if col.nullable else 0, len(col.categories), n)
            data[col.name] = pd.Categorical.from_codes(codes, categories=list(col.categories))
    table = pd.DataFrame(data)
    members, holdout, synthetic = table.iloc[:6300], table.iloc[6300:7875], table.iloc[7875:]
    start = time.perf_counter()
    results = run_membership_attacks(synthetic, members, holdout.iloc[:788], holdout.iloc[788:], schema,
                                     np.random.default_rng(0))
    elapsed = time.perf_counter() - start
    assert len(results) == 4
    assert elapsed < 15.0, f"{elapsed:.1f} s for four attacks"  # about 1 s on 2 cores
