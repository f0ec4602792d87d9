"""Estimates (audit/estimates.py): hand-worked intervals, the Jagielski et al. bound, the DP advantage cap."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from hgan.audit.estimates import (
    RiskEstimate,
    clopper_pearson,
    empirical_epsilon,
    empirical_epsilon_lower_bounds,
    max_advantage,
    residual_risk,
    wilson,
)

Z95 = 1.959963984540054  # the 97.5% standard normal quantile


# -- Clopper-Pearson (rule 2) ---------------------------------------------------

def test_clopper_pearson_zero_successes_has_the_closed_form_upper_bound():
    est = clopper_pearson(0, 10)
    assert est.value == 0.0 and est.low == 0.0
    assert est.high == pytest.approx(1 - 0.025 ** (1 / 10), rel=1e-9)  # solves (1 - p)^10 = 0.025
    assert est.method == "clopper-pearson" and est.confidence == 0.95


def test_clopper_pearson_all_successes_mirrors_zero():
    est = clopper_pearson(10, 10)
    assert est.high == 1.0
    assert est.low == pytest.approx(0.025 ** (1 / 10), rel=1e-9)  # solves p^10 = 0.025


def test_clopper_pearson_three_of_ten_matches_published_table():
    # Exact 95% interval of 3/10, as tabulated (e.g. R's binom.test(3, 10)): 0.0667, 0.6525.
    est = clopper_pearson(3, 10)
    assert est.low == pytest.approx(0.06673951, abs=1e-7)
    assert est.high == pytest.approx(0.65245285, abs=1e-7)


def test_clopper_pearson_covers_at_least_its_confidence():
    rng = np.random.default_rng(0)
    p, n = 0.03, 200
    draws = rng.binomial(n, p, 2000)
    covered = [clopper_pearson(int(k), n).low <= p <= clopper_pearson(int(k), n).high for k in draws]
    assert np.mean(covered) >= 0.95


# -- Wilson (rule 2) -----------------------------------------------------------

def test_wilson_three_of_ten_matches_hand_computation():
    n, p, z = 10, 0.3, Z95
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    est = wilson(3, 10)
    assert est.value == 0.3
    assert est.low == pytest.approx(centre - half, rel=1e-12) == pytest.approx(0.1078, abs=1e-4)
    assert est.high == pytest.approx(centre + half, rel=1e-12) == pytest.approx(0.6032, abs=1e-4)
    assert est.method == "wilson"


def test_wilson_zero_successes_starts_at_zero():
    est = wilson(0, 20)
    assert est.low == 0.0
    assert est.high == pytest.approx(Z95**2 / (20 + Z95**2), rel=1e-12)  # Wilson's bound at p = 0


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_intervals_contain_the_point_estimate(counts, confidence):
    k, n = counts
    for est in (wilson(k, n, confidence), clopper_pearson(k, n, confidence)):
        assert 0.0 <= est.low <= est.value <= est.high <= 1.0


@pytest.mark.parametrize("call", [lambda: wilson(1, 0), lambda: wilson(5, 4), lambda: clopper_pearson(-1, 4),
                                  lambda: clopper_pearson(1, 4, confidence=1.0)])
def test_impossible_counts_or_confidence_raise(call):
    with pytest.raises(ValueError):
        call()


# -- empirical epsilon (rule 3) -------------------------------------------------

def test_perfect_attack_on_1000_members_and_1000_non_members():
    # TPR_low = 0.025^(1/1000) and FPR_high = 1 - 0.025^(1/1000), each one-sided at 97.5%.
    t = 0.025 ** (1 / 1000)
    est = empirical_epsilon(1000, 0, 0, 1000, delta=0.0)
    assert est.low == pytest.approx(math.log(t / (1 - t)), rel=1e-9)
    assert est.low == pytest.approx(5.60, abs=0.01)  # far below log(1000): 1000 trials cannot show more
    assert est.value == math.inf and est.high == math.inf


def test_delta_lowers_the_bound_as_the_formula_says():
    t = 0.025 ** (1 / 1000)
    est = empirical_epsilon(1000, 0, 0, 1000, delta=1e-3)
    assert est.low == pytest.approx(math.log((t - 1e-3) / (1 - t)), rel=1e-9)


def test_coin_flip_gives_zero():
    est = empirical_epsilon(500, 500, 500, 500, delta=0.0)
    assert est.value == 0.0 and est.low == 0.0


def test_the_complementary_direction_counts_too():
    # Every member flagged, most non-members too: TPR/FPR is near 1, but
    # (1 - FPR) / (1 - TPR) is large: "not flagged" almost never happens to a member.
    est = empirical_epsilon(1000, 0, 900, 100, delta=0.0)
    tpr_low = clopper_pearson(1000, 1000).low
    fpr_high = clopper_pearson(900, 1000).high
    assert est.low == pytest.approx(math.log((1 - fpr_high) / (1 - tpr_low)), rel=1e-9)
    assert est.low > 3.0
    assert math.log(tpr_low / fpr_high) < 0.1


def test_raw_rates_give_the_point_estimate():
    est = empirical_epsilon(300, 700, 100, 900, delta=0.0)  # TPR 0.3, FPR 0.1
    assert est.value == pytest.approx(math.log(3.0))
    assert 0.0 < est.low < est.value


def test_vectorised_bounds_equal_the_scalar_ones():
    tp, fn, fp, tn = np.array([1000, 500, 300, 0]), np.array([0, 500, 700, 10]), \
        np.array([0, 500, 100, 3]), np.array([1000, 500, 900, 7])
    many = empirical_epsilon_lower_bounds(tp, fn, fp, tn, delta=1e-5)
    one_by_one = [empirical_epsilon(*map(int, c), delta=1e-5).low for c in zip(tp, fn, fp, tn)]
    assert many.tolist() == pytest.approx(one_by_one)


def test_empirical_epsilon_refuses_empty_groups_and_bad_delta():
    with pytest.raises(ValueError, match="at least one member"):
        empirical_epsilon(0, 0, 5, 5, delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        empirical_epsilon(5, 5, 5, 5, delta=1.5)


def test_to_dict_is_strict_json_with_null_for_unbounded():
    d = empirical_epsilon(1000, 0, 0, 1000, delta=0.0).to_dict()
    assert d["value"] is None and d["high"] is None and d["low"] > 5
    json.dumps(d, allow_nan=False)
    assert set(RiskEstimate(0.1, 0.0, 0.2, 0.95, "wilson").to_dict()) == {"value", "low", "high", "confidence",
                                                                          "method"}


# -- the DP advantage cap (rule 4) ------------------------------------------------

@pytest.mark.parametrize("epsilon,delta,expected", [(0.0, 0.0, 0.0), (math.log(3), 0.0, 0.5),
                                                    (0.0, 0.1, 0.1), (math.inf, 0.0, 1.0)])
def test_max_advantage_known_values(epsilon, delta, expected):
    assert max_advantage(epsilon, delta) == pytest.approx(expected)


@pytest.mark.parametrize("epsilon,delta", [(0.5, 1e-5), (1.0, 0.01), (3.0, 1e-6)])
def test_max_advantage_is_reached_where_both_dp_inequalities_bind(epsilon, delta):
    fpr = (1 - delta) / (math.exp(epsilon) + 1)
    tpr = math.exp(epsilon) * fpr + delta  # TPR <= e^eps FPR + delta, with equality
    assert 1 - fpr == pytest.approx(math.exp(epsilon) * (1 - tpr) + delta)  # and the other one
    assert tpr - fpr == pytest.approx(max_advantage(epsilon, delta))


# -- Anonymeter's residual risk (rule 5) -----------------------------------------------

def anonymeter_risk(n_success: int, n_control: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Anonymeter's stats/confidence.py, transcribed: success_rate, residual_success, bind_value."""
    z = float(stats.norm.ppf(0.5 * (1.0 + confidence)))

    def rate(k: int) -> tuple[float, float]:
        return (k + 0.5 * z * z) / (n + z * z), z / (n + z * z) * math.sqrt(k * (n - k) / n + 0.25 * z * z)

    (a, da), (c, dc) = rate(n_success), rate(n_control)
    risk = (a - c) / (1 - c)
    error = math.sqrt((da / abs(1 - c)) ** 2 + (dc * (a - 1) / (1 - c) ** 2) ** 2)
    return tuple(min(max(x, 0.0), 1.0) for x in (risk, risk - error, risk + error))  # type: ignore[return-value]


@pytest.mark.parametrize("n_success,n_control,n", [(60, 20, 100), (5, 0, 5), (1990, 30, 2000), (3, 3, 10),
                                                   (10, 40, 100), (500, 499, 500)])
def test_residual_risk_is_anonymeters(n_success, n_control, n):
    est = residual_risk(n_success, n, n_control, n)
    assert (est.value, est.low, est.high) == pytest.approx(anonymeter_risk(n_success, n_control, n), abs=1e-12)
    assert est.method == "anonymeter-residual-wilson" and est.low <= est.value <= est.high


def test_residual_risk_known_values():
    assert residual_risk(20, 100, 20, 100).value == 0.0  # no excess over control
    assert residual_risk(10, 100, 40, 100).high == 0.0  # control far more attackable: clipped to 0
    perfect = residual_risk(200, 200, 0, 200)
    z2 = Z95**2
    a, c = (200 + z2 / 2) / (200 + z2), (z2 / 2) / (200 + z2)  # the Wilson centres of 200/200 and 0/200
    assert perfect.value == pytest.approx((a - c) / (1 - c), rel=1e-9)
    assert 0.99 < perfect.value < 1.0 and perfect.high == 1.0
    assert residual_risk(100, 100, 100, 100).value == 0.0  # every control attack succeeds: defined, 0


def test_residual_risk_refuses_bad_counts():
    with pytest.raises(ValueError, match="successes must be within"):
        residual_risk(5, 4, 0, 4)
    with pytest.raises(ValueError, match="at least one trial"):
        residual_risk(0, 0, 0, 4)
