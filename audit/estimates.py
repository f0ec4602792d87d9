"""Estimates with confidence intervals: the only place the audit computes an interval.

Rules:
1. Every figure the audit reports about a risk is a ``RiskEstimate``: the point
   estimate ``value`` and an interval ``[low, high]`` at ``confidence``, with
   the ``method`` that produced it. ``to_dict`` writes JSON-safe numbers: an
   unbounded end (``inf``) is written as ``null``.
2. A success rate gets the Wilson score interval (``wilson``; as Anonymeter's
   ``stats/confidence.py``) or the exact Clopper-Pearson interval
   (``clopper_pearson``; Clopper and Pearson 1934, from the beta distribution).
   Both are two-sided and equal-tailed: each tail holds (1 - confidence) / 2.
3. An attack's true- and false-positive counts become an empirical epsilon
   lower bound as in Jagielski, Ullman and Oprea 2020, "Auditing differentially
   private machine learning: how private is private SGD?" (NeurIPS), section
   3: ``empirical_epsilon``. The two one-sided Clopper-Pearson bounds it needs
   each hold with probability (1 + confidence) / 2 (alpha split in two), so
   both hold together, and the bound with it, with probability ``confidence``.
4. ``max_advantage`` is the largest TPR - FPR any membership test can reach
   against an (epsilon, delta)-DP mechanism (Kairouz, Oh and Viswanath 2015,
   the two inequalities of rule 3 solved together).
5. ``residual_risk`` is Anonymeter's privacy risk (Giomi et al. 2023, "A
   unified framework for quantifying privacy risk in synthetic data", PoPETs;
   ``residual_success`` and ``bind_value`` in Anonymeter's
   ``stats/confidence.py``): the excess of an attack's success on training
   targets over its success on control targets, (a - c) / (1 - c), with a and
   c the centres of the two Wilson intervals of rule 2 and the interval
   propagated from their half-widths to first order. Value and interval are
   clipped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class RiskEstimate:
    """A point estimate and its interval ``[low, high]`` at ``confidence``."""

    value: float
    low: float
    high: float
    confidence: float
    method: str

    def to_dict(self) -> dict[str, float | str | None]:
        return {"value": _json_number(self.value), "low": _json_number(self.low),
                "high": _json_number(self.high), "confidence": self.confidence, "method": self.method}


def wilson(successes: int, trials: int, confidence: float = 0.95) -> RiskEstimate:
    """Wilson score interval of a success rate (rule 2)."""
    _check_counts(successes, trials)
    _check_confidence(confidence)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
    # The interval always holds p; min/max only undo rounding at p = 0 and p = 1.
    low, high = float(max(0.0, min(p, centre - half))), float(min(1.0, max(p, centre + half)))
    return RiskEstimate(p, low, high, confidence, "wilson")


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> RiskEstimate:
    """Exact (Clopper-Pearson) interval of a success rate (rule 2)."""
    _check_counts(successes, trials)
    _check_confidence(confidence)
    low, high = _cp_bounds(np.array([successes]), np.array([trials]), confidence)
    return RiskEstimate(successes / trials, float(low[0]), float(high[0]), confidence, "clopper-pearson")


def empirical_epsilon(tp: int, fn: int, fp: int, tn: int, *, delta: float,
                      confidence: float = 0.95) -> RiskEstimate:
    """Lower bound on the epsilon of a mechanism from a membership test's counts.

    Jagielski, Ullman and Oprea 2020 ("Auditing differentially private machine
    learning"): an (epsilon, delta)-DP mechanism forces every test to satisfy
    TPR <= e^eps FPR + delta and 1 - FPR <= e^eps (1 - TPR) + delta. With the
    Clopper-Pearson bounds TPR_low and FPR_high (one-sided, each at
    (1 + confidence) / 2, rule 3)::

        eps_lb = max(log((TPR_low - delta) / FPR_high),
                     log((1 - FPR_high - delta) / (1 - TPR_low)), 0)

    ``value`` is the same expression on the raw rates (``inf`` when a
    denominator is 0, e.g. a perfect attack), ``low`` is ``eps_lb`` and
    ``high`` is ``inf``: an attack only ever bounds epsilon from below.
    """
    counts = [np.array([c]) for c in (tp, fn, fp, tn)]
    low = empirical_epsilon_lower_bounds(*counts, delta=delta, confidence=confidence)
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    value = max(_log_ratio(tpr - delta, fpr), _log_ratio(1 - fpr - delta, 1 - tpr), 0.0)
    return RiskEstimate(value, float(low[0]), math.inf, confidence, "jagielski2020-clopper-pearson")


def empirical_epsilon_lower_bounds(tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray, *,
                                   delta: float, confidence: float = 0.95) -> np.ndarray:
    """``eps_lb`` of ``empirical_epsilon`` for many count vectors at once (a threshold search)."""
    tp, fn, fp, tn = (np.asarray(c, dtype=np.int64) for c in (tp, fn, fp, tn))
    for name, c in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if (c < 0).any():
            raise ValueError(f"{name} must be a non-negative count")
    if ((tp + fn) < 1).any() or ((fp + tn) < 1).any():
        raise ValueError("empirical epsilon needs at least one member (tp + fn) and one non-member (fp + tn)")
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    _check_confidence(confidence)
    tpr_low, _ = _cp_bounds(tp, tp + fn, confidence)
    _, fpr_high = _cp_bounds(fp, fp + tn, confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        forward = _log_ratios(tpr_low - delta, fpr_high)
        backward = _log_ratios(1 - fpr_high - delta, 1 - tpr_low)
    return np.maximum(np.maximum(forward, backward), 0.0)


def max_advantage(epsilon: float, delta: float) -> float:
    """Largest TPR - FPR of any test against (epsilon, delta)-DP: (e^eps - 1 + 2 delta) / (e^eps + 1)."""
    if epsilon < 0 or not 0.0 <= delta <= 1.0:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], got epsilon={epsilon}, delta={delta}")
    if math.isinf(epsilon):
        return 1.0
    return min(1.0, (math.expm1(epsilon) + 2 * delta) / (math.exp(epsilon) + 1))


def residual_risk(attack_successes: int, attack_trials: int, control_successes: int, control_trials: int,
                  confidence: float = 0.95) -> RiskEstimate:
    """Anonymeter's risk: the attack's excess success on training targets over control targets (rule 5).

    With ``a +- da`` and ``c +- dc`` the Wilson intervals of the two success
    rates written as centre +- half-width (the interval is symmetric about its
    centre)::

        risk  = (a - c) / (1 - c)
        error = sqrt((da / (1 - c))^2 + (dc (a - 1) / (1 - c)^2)^2)

    and the result is ``risk`` and ``[risk - error, risk + error]``, each
    clipped to [0, 1], as Anonymeter's ``residual_success(...).to_risk()``.
    The Wilson centre is below 1 even when every control attack succeeds, so
    the ratio is always defined; the price is that a perfect attack scores a
    little under 1 (0.99 at 200 trials against no control success).
    """
    attack, control = wilson(attack_successes, attack_trials, confidence), \
        wilson(control_successes, control_trials, confidence)
    a, da = (attack.low + attack.high) / 2, (attack.high - attack.low) / 2
    c, dc = (control.low + control.high) / 2, (control.high - control.low) / 2
    risk = (a - c) / (1 - c)
    error = math.hypot(da / (1 - c), dc * (a - 1) / (1 - c) ** 2)
    return RiskEstimate(_clip_unit(risk), _clip_unit(risk - error), _clip_unit(risk + error), confidence,
                        "anonymeter-residual-wilson")


# -- helpers -----------------------------------------------------------------

def _cp_bounds(successes: np.ndarray, trials: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed Clopper-Pearson bounds; low is 0 at 0 successes, high is 1 at ``trials``."""
    alpha = 1.0 - confidence
    k, n = successes.astype(np.float64), trials.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, stats.beta.ppf(alpha / 2, np.maximum(k, 1), n - k + 1), 0.0)
        high = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1)), 1.0)
    return low, high


def _log_ratios(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """log(numerator / denominator); -inf where the numerator is <= 0, +inf where only the denominator is."""
    out = np.full(np.shape(numerator), -np.inf)
    positive = numerator > 0
    out[positive & (denominator <= 0)] = np.inf
    ok = positive & (denominator > 0)
    out[ok] = np.log(numerator[ok] / denominator[ok])
    return out


def _log_ratio(numerator: float, denominator: float) -> float:
    return float(_log_ratios(np.array([numerator]), np.array([denominator]))[0])


def _check_counts(successes: int, trials: int) -> None:
    if trials < 1:
        raise ValueError(f"an interval needs at least one trial, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be within 0..trials, got {successes} of {trials}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _clip_unit(x: float) -> float:
    return float(min(max(x, 0.0), 1.0))


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
