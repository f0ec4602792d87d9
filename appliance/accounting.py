"""One privacy accountant for every privacy event of a training run.

Accountant: Renyi differential privacy (RDP; Mironov 2017), as Opacus'
``RDPAccountant``. Why RDP: a Gaussian release (the target histogram) and
thousands of subsampled Gaussian steps (DP-SGD) compose by adding their RDP
curves order by order, so one curve covers the whole run; the curve is an upper
bound, so the reported epsilon never understates the true one.

Rules:
1. Neighbouring datasets differ by adding or removing one row. Every event is
   scaled to L2 sensitivity 1 under that relation, so its noise multiplier is
   noise std / sensitivity.
2. Sample rates, step counts and noise multipliers are public (they follow from
   public options and DP outputs); only the rows are private.
3. One function per event kind maps an event to its RDP curve on
   ``DEFAULT_ORDERS`` (``_RDP_CURVES``); curves of all events add up.
   - ``gaussian``: ``count * alpha / (2 sigma^2)`` (Mironov 2017, Prop. 7).
   - ``subsampled_gaussian`` (Poisson rate q): Opacus'
     ``accountants.analysis.rdp.compute_rdp`` (Mironov, Talwar, Zhang 2019) for
     orders up to 1024, capped by the full-batch Gaussian curve, which also
     bounds it above (Renyi divergence is jointly quasi-convex, van Erven &
     Harremoes 2014, Thm. 13); above order 1024 that Gaussian curve is used.
     The large orders only matter for small epsilons.
   - ``exponential``: one selection by the exponential mechanism with
     parameter ``epsilon`` (pure epsilon-DP, score sensitivity 1) is
     ``epsilon^2 / 8``-zCDP (Cesar & Rogers 2021, bounded range), so its RDP
     is ``count * alpha * epsilon^2 / 8``; the same bound AIM uses.
4. The summed curve becomes (epsilon, delta) with Opacus' ``get_privacy_spent``
   (Balle et al. 2020, Thm. 21), minimised over the orders; never negative.
5. ``calibrate_noise_multiplier`` returns the smallest sigma (to 0.1%, rounded
   up) whose composed epsilon meets the target, and checks that it does;
   ``calibrate_scale`` does the same for any family of events that grows with
   one scale parameter (the marginal engine's budget).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.rdp import RDPAccountant

ACCOUNTANT = "rdp"

# Opacus' grid (1.1..10.9, 12..63), then larger orders for small epsilons:
# dp_accounting's grid stops at 1024; the Gaussian bound makes larger ones cheap.
_SGM_MAX_ORDER = 1024
DEFAULT_ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS) + (
    64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024, 2048, 4096, 8192, 16384)

SIGMA_MAX = 1e4     # calibration gives up above this noise multiplier
SIGMA_MIN = 1e-3    # and never returns less
_PRECISION = 1e-4   # relative width of the bisection bracket, before rounding up to 4 digits


@dataclass(frozen=True)
class PrivacyEvent:
    """One mechanism applied ``count`` times to the private rows (validated on construction).

    kind: ``"gaussian"`` (one release of L2 sensitivity 1, ``sample_rate`` 1.0),
    ``"subsampled_gaussian"`` (DP-SGD steps with Poisson sampling) or
    ``"exponential"`` (selections by the exponential mechanism with parameter
    ``epsilon``; no noise multiplier; ``sample_rate`` 1.0).
    """

    kind: str
    purpose: str
    noise_multiplier: float | None
    sample_rate: float
    count: int
    epsilon: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in _RDP_CURVES:
            raise ValueError(f"unknown privacy event kind {self.kind!r}; known: {sorted(_RDP_CURVES)}")
        if not isinstance(self.purpose, str) or not self.purpose.strip():
            raise ValueError("a privacy event needs a purpose (non-empty text)")
        if self.kind == "exponential":
            if self.noise_multiplier is not None:
                raise ValueError("an exponential event has no noise_multiplier")
            _check_number("epsilon", self.epsilon, low=0.0, low_open=True)
            object.__setattr__(self, "epsilon", float(self.epsilon))
        else:
            if self.epsilon is not None:
                raise ValueError(f"a {self.kind} event has no epsilon")
            _check_number("noise_multiplier", self.noise_multiplier, low=0.0, low_open=True)
            object.__setattr__(self, "noise_multiplier", float(self.noise_multiplier))
        _check_number("sample_rate", self.sample_rate, low=0.0, low_open=True, high=1.0)
        if self.kind != "subsampled_gaussian" and self.sample_rate != 1.0:
            raise ValueError(f"a {self.kind} event has sample_rate 1.0")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"count must be an integer >= 0, got {self.count!r}")
        object.__setattr__(self, "sample_rate", float(self.sample_rate))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PrivacyEvent":
        """Build an event from ``to_dict`` output; ValueError on missing, extra or bad fields."""
        if not isinstance(d, dict):
            raise ValueError("a privacy event must be a JSON object")
        fields = set(cls.__dataclass_fields__)
        if set(d) != fields:
            raise ValueError(f"privacy event fields must be {sorted(fields)}; "
                             f"missing {sorted(fields - set(d))}, unexpected {sorted(set(d) - fields)}")
        return cls(**d)


def _check_number(name: str, value: object, *, low: float, low_open: bool, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value}")


# --- rule 3: one RDP curve per event kind ----------------------------------------

def _gaussian_curve(sigma: float, orders: np.ndarray) -> np.ndarray:
    """RDP of one Gaussian release with sensitivity 1: ``alpha / (2 sigma^2)``."""
    return orders / (2.0 * sigma**2)


def _gaussian_event_rdp(event: PrivacyEvent, orders: np.ndarray) -> np.ndarray:
    return event.count * _gaussian_curve(event.noise_multiplier, orders)


def _subsampled_gaussian_event_rdp(event: PrivacyEvent, orders: np.ndarray) -> np.ndarray:
    bound = _gaussian_curve(event.noise_multiplier, orders)
    small = orders <= _SGM_MAX_ORDER
    sgm = np.asarray(compute_rdp(q=event.sample_rate, noise_multiplier=event.noise_multiplier,
                                 steps=1, orders=list(orders[small])), dtype=float)
    bound[small] = np.minimum(bound[small], sgm)
    return event.count * bound


def _exponential_event_rdp(event: PrivacyEvent, orders: np.ndarray) -> np.ndarray:
    """``count * alpha * epsilon^2 / 8`` (Cesar & Rogers 2021)."""
    return event.count * orders * event.epsilon**2 / 8.0


_RDP_CURVES: dict[str, Callable[[PrivacyEvent, np.ndarray], np.ndarray]] = {
    "gaussian": _gaussian_event_rdp,
    "subsampled_gaussian": _subsampled_gaussian_event_rdp,
    "exponential": _exponential_event_rdp,
}


def rdp_curve(events: Sequence[PrivacyEvent]) -> np.ndarray:
    """Summed RDP of all events at each of ``DEFAULT_ORDERS``."""
    orders = np.asarray(DEFAULT_ORDERS, dtype=float)
    total = np.zeros_like(orders)
    for event in events:
        total += _RDP_CURVES[event.kind](event, orders)
    return total


def epsilon(events: Sequence[PrivacyEvent], delta: float) -> float:
    """Epsilon of all events composed, at ``delta`` (rule 4). 0.0 for no events."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return _epsilon_of_curve(rdp_curve(events), delta)


def _epsilon_of_curve(rdp: np.ndarray, delta: float) -> float:
    if not np.any(rdp):
        return 0.0
    with warnings.catch_warnings():
        # "optimal order is the smallest/largest alpha": the bound is still valid, only looser
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps, _ = get_privacy_spent(orders=list(DEFAULT_ORDERS), rdp=rdp, delta=delta)
    return max(0.0, float(eps))


# --- rule 5: calibration ---------------------------------------------------------

def calibrate_noise_multiplier(*, target_epsilon: float, delta: float, sample_rate: float, steps: int,
                               fixed_events: Sequence[PrivacyEvent] = (),
                               purpose: str = "discriminator DP-SGD") -> float:
    """Smallest noise multiplier such that ``fixed_events`` + the DP-SGD steps meet the target.

    Bisects 1/sigma with ``calibrate_scale`` (relative width 1e-4), takes the
    safe end and rounds it up to 4 significant digits (so within ~0.1% of the
    smallest), and checks that it meets the target. ValueError if the fixed
    events alone reach the target or no sigma below ``SIGMA_MAX`` works.
    """
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    spent = epsilon(fixed_events, delta)
    if spent >= target_epsilon:
        raise ValueError(f"the other privacy events already spend epsilon {spent:.4g} "
                         f">= target {target_epsilon:g}")

    def events_at(inverse_sigma: float) -> list[PrivacyEvent]:
        sgm = PrivacyEvent("subsampled_gaussian", purpose, 1.0 / inverse_sigma, sample_rate, steps)
        return [*fixed_events, sgm]

    def eps_at(sigma: float) -> float:
        return epsilon(events_at(1.0 / sigma), delta)

    if eps_at(SIGMA_MAX) > target_epsilon:
        raise ValueError(f"no noise multiplier below {SIGMA_MAX:g} reaches epsilon {target_epsilon:g} "
                         f"with {steps} steps at sample rate {sample_rate:g}")
    high = 1.0 / calibrate_scale(events_at, target_epsilon=target_epsilon, delta=delta,
                                 low=1.0 / SIGMA_MAX, high=1.0 / SIGMA_MIN)
    sigma = max(_round_up(high, digits=4), high)
    if eps_at(sigma) > target_epsilon:
        raise RuntimeError(f"calibrated sigma {sigma} misses epsilon {target_epsilon}")
    return sigma


def calibrate_scale(events_at: Callable[[float], Sequence[PrivacyEvent]], *, target_epsilon: float,
                    delta: float, low: float, high: float) -> float:
    """Largest scale in [low, high] (to a relative 1e-4) whose events meet the target.

    ``events_at(scale)`` must cost more privacy as ``scale`` grows. ValueError
    if even ``low`` misses the target; ``high`` if it already meets it.
    """
    def eps_at(scale: float) -> float:
        return epsilon(events_at(scale), delta)

    if eps_at(low) > target_epsilon:
        raise ValueError(f"even the smallest budget scale {low:g} spends more than epsilon {target_epsilon:g}")
    if eps_at(high) <= target_epsilon:
        return high
    while high / low > 1.0 + _PRECISION:
        mid = math.sqrt(low * high)
        if eps_at(mid) <= target_epsilon:
            low = mid
        else:
            high = mid
    return low


def _round_up(x: float, *, digits: int) -> float:
    """``x`` rounded up to ``digits`` significant digits."""
    unit = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return round(math.ceil(x / unit) * unit, 12)
