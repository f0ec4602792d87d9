"""The RDP accountant (appliance/accounting.py) against an independent one (dp_accounting)."""

from __future__ import annotations

import math

import dp_accounting as dpa
import pytest
from opacus.accountants.rdp import RDPAccountant

from hgan.appliance.accounting import (
    ACCOUNTANT,
    DEFAULT_ORDERS,
    PrivacyEvent,
    calibrate_noise_multiplier,
    epsilon,
    rdp_curve,
)


def dpsgd(sigma: float, q: float, steps: int) -> PrivacyEvent:
    return PrivacyEvent("subsampled_gaussian", "discriminator DP-SGD", sigma, q, steps)


def release(sigma: float, count: int = 1) -> PrivacyEvent:
    return PrivacyEvent("gaussian", "target histogram", sigma, 1.0, count)


def as_dp_event(event: PrivacyEvent) -> dpa.DpEvent:
    gaussian = dpa.GaussianDpEvent(event.noise_multiplier)
    one = gaussian if event.kind == "gaussian" else dpa.PoissonSampledDpEvent(event.sample_rate, gaussian)
    return dpa.SelfComposedDpEvent(one, event.count)


def dp_accounting_rdp(events: list[PrivacyEvent], delta: float) -> float:
    accountant = dpa.rdp.RdpAccountant()
    accountant.compose(dpa.ComposedDpEvent([as_dp_event(e) for e in events]))
    return accountant.get_epsilon(delta)


def dp_accounting_pld(events: list[PrivacyEvent], delta: float) -> float:
    accountant = dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dpa.ComposedDpEvent([as_dp_event(e) for e in events]))
    return accountant.get_epsilon(delta)


SETTINGS = [  # sigma, q, steps, delta
    (1.0, 0.01, 1000, 1e-6),
    (0.8, 0.05, 300, 1e-5),
    (2.0, 0.2, 50, 1e-6),
    (5.0, 0.004, 20_000, 1e-7),
    (1.2, 1.0, 3, 1e-6),
]


@pytest.mark.parametrize("sigma,q,steps,delta", SETTINGS)
def test_dpsgd_epsilon_matches_dp_accounting_rdp_and_is_not_below_pld(sigma, q, steps, delta) -> None:
    events = [dpsgd(sigma, q, steps)]
    ours = epsilon(events, delta)
    assert ours == pytest.approx(dp_accounting_rdp(events, delta), rel=0.02)
    assert ours >= dp_accounting_pld(events, delta)


def test_a_gaussian_release_is_never_below_the_exact_gaussian_epsilon() -> None:
    for sigma, delta in [(1.0, 1e-5), (25.0, 1e-6), (250.0, 1e-6), (2500.0, 1e-6)]:
        ours = epsilon([release(sigma)], delta)
        exact = dpa.get_epsilon_gaussian(sigma, delta)  # Balle & Wang 2018, tight
        assert exact <= ours <= dp_accounting_rdp([release(sigma)], delta) * 1.0001
    # orders above 1024 (where dp_accounting's grid stops) matter for epsilons near 0.01
    assert epsilon([release(2500.0)], 1e-6) < 0.5 * dp_accounting_rdp([release(2500.0)], 1e-6)


def test_composing_a_release_with_dpsgd_costs_more_than_either_and_matches_dp_accounting() -> None:
    hist, steps, delta = release(25.0), dpsgd(1.0, 0.02, 2000), 1e-6
    both = epsilon([hist, steps], delta)
    assert both > max(epsilon([hist], delta), epsilon([steps], delta))
    assert both == pytest.approx(dp_accounting_rdp([hist, steps], delta), rel=0.02)
    assert both >= dp_accounting_pld([hist, steps], delta)


def test_curves_add_up_over_events_and_counts() -> None:
    one = rdp_curve([dpsgd(1.1, 0.03, 1)])
    assert rdp_curve([dpsgd(1.1, 0.03, 7)]) == pytest.approx(7 * one)
    assert rdp_curve([dpsgd(1.1, 0.03, 3), dpsgd(1.1, 0.03, 4)]) == pytest.approx(7 * one)
    # subsampling never costs more than the full-batch Gaussian at the same sigma
    assert (one <= rdp_curve([release(1.1)]) + 1e-12).all()


def test_no_events_cost_nothing_and_bad_delta_is_refused() -> None:
    assert epsilon([], 1e-6) == 0.0
    with pytest.raises(ValueError, match="delta"):
        epsilon([release(1.0)], 0.0)


def test_the_order_grid_contains_opacus_defaults() -> None:
    assert set(RDPAccountant.DEFAULT_ALPHAS) <= set(DEFAULT_ORDERS)
    assert list(DEFAULT_ORDERS) == sorted(DEFAULT_ORDERS) and ACCOUNTANT == "rdp"


# --- calibration -----------------------------------------------------------------

@pytest.mark.parametrize("target,q,steps,fixed", [
    (3.0, 0.02, 1000, ()),
    (1.0, 256 / 5000, 400, (release(25.0),)),
], ids=["dpsgd-only", "with-histogram"])
def test_calibrated_sigma_is_the_smallest_that_meets_the_target(target, q, steps, fixed) -> None:
    delta = 1e-6
    sigma = calibrate_noise_multiplier(target_epsilon=target, delta=delta, sample_rate=q, steps=steps,
                                       fixed_events=fixed)
    assert epsilon([*fixed, dpsgd(sigma, q, steps)], delta) <= target
    assert epsilon([*fixed, dpsgd(sigma * (1 - 0.002), q, steps)], delta) > target
    assert len(f"{sigma:.10g}".replace(".", "").strip("0")) <= 4  # rounded up to 4 significant digits


def test_calibration_refuses_when_other_events_already_spend_the_target() -> None:
    with pytest.raises(ValueError, match="already spend"):
        calibrate_noise_multiplier(target_epsilon=0.5, delta=1e-6, sample_rate=0.01, steps=100,
                                   fixed_events=[release(2.0)])


def test_calibration_refuses_when_no_sigma_below_the_cap_works() -> None:
    with pytest.raises(ValueError, match="no noise multiplier"):
        calibrate_noise_multiplier(target_epsilon=1e-3, delta=1e-6, sample_rate=1.0, steps=10**7)


# --- PrivacyEvent ----------------------------------------------------------------

def test_privacy_event_round_trips_through_dict() -> None:
    for event in (release(25.0), dpsgd(1.234, 0.05, 400)):
        assert PrivacyEvent.from_dict(event.to_dict()) == event
    assert PrivacyEvent.from_dict({**release(3.0).to_dict(), "noise_multiplier": 3}).noise_multiplier == 3.0


@pytest.mark.parametrize("change", [
    {"kind": "laplace"},
    {"kind": ["gaussian"]},
    {"noise_multiplier": -1.0},
    {"noise_multiplier": 0.0},
    {"noise_multiplier": math.nan},
    {"noise_multiplier": "1.0"},
    {"sample_rate": 1.5},
    {"sample_rate": 0.0},
    {"count": -1},
    {"count": 2.5},
    {"count": True},
    {"purpose": ""},
    {"extra": 1},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_from_dict_rejects_bad_fields(change: dict) -> None:
    with pytest.raises(ValueError):
        PrivacyEvent.from_dict({**dpsgd(1.0, 0.1, 10).to_dict(), **change})


def test_from_dict_rejects_missing_fields_and_a_subsampled_release() -> None:
    d = release(1.0).to_dict()
    del d["count"]
    with pytest.raises(ValueError, match="missing"):
        PrivacyEvent.from_dict(d)
    with pytest.raises(ValueError, match="sample_rate"):
        PrivacyEvent.from_dict({**release(1.0).to_dict(), "sample_rate": 0.5})
