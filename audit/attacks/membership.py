"""Black-box membership inference against synthetic rows.

The adversary of DESIGN.md's threat model holds released synthetic rows and
population data, and asks of a target record: was it a training row?

Rows (every result names them in its notes):
- members: the training rows of the generator;
- non-members: holdout rows never used in training;
- reference: another part of the holdout, disjoint from the non-members: the
  attacker's own population data. Calibrated attacks use it; the caller keeps
  it apart from the non-members (a reference row among the non-members would
  inflate the results of ``mia.dcr_calibrated`` and ``mia.domias``).

Rules:
1. Attacks work in the schema-only space of ``audit/features.py``; nothing is
   fitted to the private rows. What an attack fits (a PCA, a radius) is fitted
   to the reference rows, i.e. by the attacker to their own data.
2. Each attack scores every target, higher meaning "member":
   ``mia.dcr``            GAN-Leaks full black-box (Chen, Yu, Zhang and Fritz
                          2020, "GAN-Leaks: a taxonomy of membership inference
                          attacks against generative models", CCS): minus the
                          Euclidean distance to the closest synthetic row.
   ``mia.dcr_calibrated`` the same, calibrated (Chen et al. section 5.3): minus
                          (log distance to the closest synthetic row - log
                          distance to the closest reference row), distances
                          floored at ``DISTANCE_FLOOR``. Chen et al. calibrate
                          with a reference generator fitted to population data;
                          the reference rows themselves stand in for its
                          samples. They subtract distances; the log is ours:
                          nearest-neighbour distances shrink by a factor with
                          the size of a set, so the log turns unequal synthetic
                          and reference sizes into a constant that leaves the
                          ranking alone (positive-control AUC on rotterdam: 0.75
                          subtracting distances, 0.98 subtracting logs).
   ``mia.monte_carlo``    Hilprecht, Haerterich and Bernau 2019, "Monte Carlo
                          and reconstruction membership inference attacks
                          against generative models" (PoPETs): the number of
                          synthetic rows within radius r of the target.
                          Hilprecht et al. set r by a heuristic on distances
                          (median or a low percentile); here r is the
                          ``MC_RADIUS_QUANTILE`` quantile, over reference rows,
                          of their distance to the closest synthetic row: about
                          10% of population rows have a synthetic row within
                          r, so "count >= 1" is a test at about 10% FPR. (The
                          median, the paper's Eq. 4 on these distances, loses
                          much of the power: positive-control AUC 0.75-0.78
                          against 0.95 at 0.1.)
   ``mia.domias``         van Breugel, Sun, Qian and van der Schaar 2023,
                          "Membership inference attacks against synthetic data
                          through overfitting detection" (AISTATS):
                          log p_synthetic(x) - log p_reference(x), both Gaussian
                          kernel densities (isotropic, Scott's bandwidth
                          n^(-1/(d+4)), as the paper's scipy KDE) on the first
                          ``DOMIAS_COMPONENTS`` principal components of the
                          reference rows, each scaled to unit variance there.
                          The paper fits densities on all columns; the
                          projection keeps wide tables (60 columns) tractable,
                          at some loss of power.
3. Measurements on all targets: the AUC; the ROC curve read on the fixed grid
   ``ROC_FPR_GRID``; TPR at FPR 1% and 0.1% (the best threshold whose FPR does
   not exceed the target; with fewer than 1/FPR non-members that is FPR 0).
4. Empirical epsilon (Jagielski, Ullman and Oprea 2020, "Auditing differentially
   private machine learning"): members and non-members are each split in two
   halves by ``rng`` (the only random draw, made once per run, shared by all
   attacks). The threshold that maximises the lower bound on the first half
   (ties: the larger TPR - FPR) is counted on the second half and turned into a
   bound by ``estimates.empirical_epsilon`` at the caller's ``delta`` (pass
   the generator's claimed delta). The counts treat targets as independent
   trials; Steinke, Nasr and Jagielski 2023 give the rigorous one-run analysis.
5. An unknown attack id, an empty or too small set of rows, or a frame whose
   columns are not the schema's modelled columns is a ``ValueError`` that names
   the set.
6. Results hold aggregates only: counts, rates, the ROC grid and notes. No
   per-row score, distance, threshold or value leaves this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import NearestNeighbors

from hgan.audit.estimates import RiskEstimate, empirical_epsilon, empirical_epsilon_lower_bounds
from hgan.audit.features import attack_features, check_columns
from hgan.release.schema import Schema

ATTACK_IDS = ("mia.dcr", "mia.dcr_calibrated", "mia.monte_carlo", "mia.domias")
TPR_FPR_TARGETS = {"0.01": 0.01, "0.001": 0.001}
ROC_FPR_GRID = tuple(float(x) for x in np.unique(np.round(np.concatenate(
    [[0.0, 0.001, 0.002, 0.005], np.linspace(0.01, 1.0, 100)]), 6)))
DISTANCE_FLOOR = 1e-6  # rule 2: an exact copy's distance, far below any column's resolution (range 1)
MC_RADIUS_QUANTILE = 0.1  # rule 2: share of reference rows with a synthetic row within the radius
DOMIAS_COMPONENTS = 20  # rule 2: dimensions of the density estimates
_KDE_CHUNK = 1024  # target rows per block of the KDE: 1024 x n_synthetic doubles at a time
MIN_ROWS = {"synthetic": 1, "members": 2, "non-members": 2, "reference": 2}  # 2 = one per half (rule 4)


@dataclass(frozen=True)
class AttackResult:
    """Aggregates of one membership attack (rule 6); ``counts`` are on the evaluation half."""

    attack_id: str
    auc: float
    tpr_at_fpr: dict[str, float]
    empirical_epsilon: RiskEstimate
    counts: dict[str, int]
    roc_fpr: tuple[float, ...]
    roc_tpr: tuple[float, ...]
    n_members: int
    n_non_members: int
    n_reference: int
    n_synthetic: int
    notes: str

    def to_dict(self) -> dict[str, object]:
        return {"attack_id": self.attack_id, "auc": self.auc, "tpr_at_fpr": dict(self.tpr_at_fpr),
                "empirical_epsilon": self.empirical_epsilon.to_dict(), "counts": dict(self.counts),
                "roc": {"fpr": list(self.roc_fpr), "tpr": list(self.roc_tpr)},
                "n_members": self.n_members, "n_non_members": self.n_non_members,
                "n_reference": self.n_reference, "n_synthetic": self.n_synthetic, "notes": self.notes}


# -- public API ----------------------------------------------------------------

def run_membership_attacks(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                           reference: pd.DataFrame, schema: Schema, rng: np.random.Generator, *,
                           delta: float = 0.0, confidence: float = 0.95,
                           attacks: tuple[str, ...] = ATTACK_IDS) -> list[AttackResult]:
    """Run ``attacks`` (all four by default) on one threshold split; one result each, in order."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (numpy.random.default_rng(seed))")
    unknown = [a for a in attacks if a not in ATTACK_IDS]
    if unknown or not attacks:
        raise ValueError(f"unknown or no membership attack id(s) {unknown}; known: {', '.join(ATTACK_IDS)}")
    space = _Space.build(synthetic, members, non_members, reference, schema)
    first_half = _threshold_split(space.n_members, space.n_non_members, rng)
    return [_evaluate(a, _SCORERS[a](space), space, first_half, delta=delta, confidence=confidence)
            for a in attacks]


def dcr(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame, reference: pd.DataFrame,
        schema: Schema, rng: np.random.Generator, *, delta: float = 0.0,
        confidence: float = 0.95) -> AttackResult:
    """``mia.dcr``: distance to the closest synthetic row (GAN-Leaks full black-box)."""
    return run_membership_attacks(synthetic, members, non_members, reference, schema, rng, delta=delta,
                                  confidence=confidence, attacks=("mia.dcr",))[0]


def dcr_calibrated(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                   reference: pd.DataFrame, schema: Schema, rng: np.random.Generator, *,
                   delta: float = 0.0, confidence: float = 0.95) -> AttackResult:
    """``mia.dcr_calibrated``: the same, calibrated by the distance to the closest reference row (log ratio)."""
    return run_membership_attacks(synthetic, members, non_members, reference, schema, rng, delta=delta,
                                  confidence=confidence, attacks=("mia.dcr_calibrated",))[0]


def monte_carlo(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                reference: pd.DataFrame, schema: Schema, rng: np.random.Generator, *,
                delta: float = 0.0, confidence: float = 0.95) -> AttackResult:
    """``mia.monte_carlo``: synthetic rows within a radius of the target (Hilprecht et al.)."""
    return run_membership_attacks(synthetic, members, non_members, reference, schema, rng, delta=delta,
                                  confidence=confidence, attacks=("mia.monte_carlo",))[0]


def domias(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame, reference: pd.DataFrame,
           schema: Schema, rng: np.random.Generator, *, delta: float = 0.0,
           confidence: float = 0.95) -> AttackResult:
    """``mia.domias``: synthetic over reference density (van Breugel et al.)."""
    return run_membership_attacks(synthetic, members, non_members, reference, schema, rng, delta=delta,
                                  confidence=confidence, attacks=("mia.domias",))[0]


# -- the rows, in the attack space (rules 1 and 5) --------------------------------

class _Space:
    """The four sets of rows as points; shared neighbour queries are computed once."""

    def __init__(self, synthetic: np.ndarray, members: np.ndarray, non_members: np.ndarray,
                 reference: np.ndarray) -> None:
        self.synthetic, self.reference = synthetic, reference
        self.targets = np.vstack([members, non_members])
        self.n_members, self.n_non_members = len(members), len(non_members)

    @classmethod
    def build(cls, synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
              reference: pd.DataFrame, schema: Schema) -> _Space:
        frames = {"synthetic": synthetic, "members": members, "non-members": non_members, "reference": reference}
        for role, frame in frames.items():
            if not isinstance(frame, pd.DataFrame):
                raise ValueError(f"{role}: expected a pandas DataFrame, got {type(frame).__name__}")
            check_columns(frame, schema, role)
            if len(frame) < MIN_ROWS[role]:
                raise ValueError(f"{role}: {len(frame)} rows; membership attacks need at least "
                                 f"{MIN_ROWS[role]}")
        return cls(*(_features(frame, schema, role) for role, frame in frames.items()))

    @cached_property
    def synthetic_neighbours(self) -> NearestNeighbors:
        return NearestNeighbors(n_neighbors=1).fit(self.synthetic)

    @cached_property
    def target_dcr(self) -> np.ndarray:
        """Distance of each target to its closest synthetic row."""
        return self.synthetic_neighbours.kneighbors(self.targets)[0][:, 0]


def _features(frame: pd.DataFrame, schema: Schema, role: str) -> np.ndarray:
    try:
        return attack_features(frame, schema)
    except ValueError as exc:  # the codec names the column; say which set of rows
        raise ValueError(f"{role}: {exc}") from exc


# -- scores (rule 2): higher means member ----------------------------------------

def _dcr_scores(space: _Space) -> np.ndarray:
    return -space.target_dcr


def _dcr_calibrated_scores(space: _Space) -> np.ndarray:
    to_reference = NearestNeighbors(n_neighbors=1).fit(space.reference).kneighbors(space.targets)[0][:, 0]
    return -(_log_distance(space.target_dcr) - _log_distance(to_reference))


def _log_distance(distance: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(distance, DISTANCE_FLOOR))


def _monte_carlo_scores(space: _Space) -> np.ndarray:
    reference_dcr = space.synthetic_neighbours.kneighbors(space.reference)[0][:, 0]
    radius = float(np.quantile(reference_dcr, MC_RADIUS_QUANTILE))
    graph = space.synthetic_neighbours.radius_neighbors_graph(space.targets, radius, mode="connectivity")
    return np.diff(graph.indptr).astype(np.float64)


def _domias_scores(space: _Space) -> np.ndarray:
    project = _whitened_projection(space.reference, DOMIAS_COMPONENTS)
    targets = project(space.targets)
    return _log_kde(targets, project(space.synthetic)) - _log_kde(targets, project(space.reference))


def _whitened_projection(reference: np.ndarray, components: int) -> Callable[[np.ndarray], np.ndarray]:
    """x -> its first principal coordinates of the reference rows, each scaled to unit variance there."""
    pca = PCA(svd_solver="full").fit(reference)
    variance = pca.explained_variance_
    k = min(components, int(np.sum(variance > DISTANCE_FLOOR**2)))  # drop directions without spread
    if k == 0:
        raise ValueError("reference: all rows are identical; a density attack needs varied population data")
    axes, scale = pca.components_[:k].T, np.sqrt(variance[:k])
    return lambda x: (x - pca.mean_) @ axes / scale


def _log_kde(points: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Log density at ``points`` of an isotropic Gaussian KDE on ``data``, Scott's bandwidth n^(-1/(d+4))."""
    n, d = data.shape
    two_h2 = 2.0 * n ** (-2.0 / (d + 4))
    log_norm = np.log(n) + d / 2 * np.log(np.pi * two_h2)
    data_sq = np.einsum("ij,ij->i", data, data)
    out = np.empty(len(points))
    for start in range(0, len(points), _KDE_CHUNK):
        chunk = points[start:start + _KDE_CHUNK]
        # -|x - y|^2 / 2h^2 for the block, in place: one (chunk x n) array, no copies
        g = chunk @ data.T
        g *= 2.0
        g -= np.einsum("ij,ij->i", chunk, chunk)[:, None]
        g -= data_sq[None, :]
        np.minimum(g, 0.0, out=g)
        g /= two_h2
        peak = g.max(axis=1, keepdims=True)  # log-sum-exp over the data rows, in place
        g -= peak
        np.exp(g, out=g)
        out[start:start + _KDE_CHUNK] = peak[:, 0] + np.log(g.sum(axis=1)) - log_norm
    return out


_SCORERS: dict[str, Callable[[_Space], np.ndarray]] = {
    "mia.dcr": _dcr_scores,
    "mia.dcr_calibrated": _dcr_calibrated_scores,
    "mia.monte_carlo": _monte_carlo_scores,
    "mia.domias": _domias_scores,
}

_NOTES = {
    "mia.dcr": "score: distance to the closest synthetic row; reference rows not used",
    "mia.dcr_calibrated": "score: log distance to the closest synthetic row minus log distance to the "
                          "closest reference row",
    "mia.monte_carlo": f"score: synthetic rows within radius r; r = the {MC_RADIUS_QUANTILE:g} quantile of "
                       "the reference rows' distance to their closest synthetic row",
    "mia.domias": f"score: log density ratio synthetic/reference, Gaussian KDEs on at most "
                  f"{DOMIAS_COMPONENTS} whitened principal components of the reference rows",
}


# -- measurements (rules 3 and 4) -----------------------------------------------

def _threshold_split(n_members: int, n_non_members: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask over the targets (members first): True = the half that chooses the threshold."""
    halves = []
    for n in (n_members, n_non_members):
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: n // 2]] = True
        halves.append(mask)
    return np.concatenate(halves)


def _evaluate(attack_id: str, scores: np.ndarray, space: _Space, first_half: np.ndarray, *,
              delta: float, confidence: float) -> AttackResult:
    notes = (f"members: {space.n_members} training rows; non-members: {space.n_non_members} holdout rows "
             f"never used in training; reference: {len(space.reference)} other holdout rows; "
             f"{_NOTES[attack_id]}")
    return measure_scores(attack_id, scores, n_members=space.n_members, n_non_members=space.n_non_members,
                          n_reference=len(space.reference), n_synthetic=len(space.synthetic),
                          first_half=first_half, delta=delta, confidence=confidence, notes=notes)


def measure_scores(attack_id: str, scores: np.ndarray, *, n_members: int, n_non_members: int,
                   n_reference: int, n_synthetic: int, first_half: np.ndarray, delta: float,
                   confidence: float, notes: str) -> AttackResult:
    """Rules 3-4 on the targets' scores (members first): AUC, TPR at low FPR, the ROC summary,
    and the empirical epsilon with the threshold chosen on ``first_half`` and counted on the rest."""
    labels = np.arange(len(scores)) < n_members
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    threshold = _best_threshold(scores[first_half], labels[first_half], delta=delta, confidence=confidence)
    tp, fn, fp, tn = (int(c[0]) for c in _counts_at(scores[~first_half], labels[~first_half],
                                                     np.array([threshold])))
    return AttackResult(
        attack_id=attack_id,
        auc=float(roc_auc_score(labels, scores)),
        tpr_at_fpr={key: _tpr_at(fpr, tpr, target) for key, target in TPR_FPR_TARGETS.items()},
        empirical_epsilon=empirical_epsilon(tp, fn, fp, tn, delta=delta, confidence=confidence),
        counts={"tp": tp, "fn": fn, "fp": fp, "tn": tn},
        roc_fpr=ROC_FPR_GRID,
        roc_tpr=tuple(_tpr_at(fpr, tpr, g) for g in ROC_FPR_GRID),
        n_members=n_members, n_non_members=n_non_members, n_reference=n_reference, n_synthetic=n_synthetic,
        notes=f"{notes}; epsilon: threshold chosen on half of the targets, counted on the other half "
              f"(delta={delta:g})",
    )


def _counts_at(scores: np.ndarray, labels: np.ndarray,
               thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fn, fp, tn) of the test "score >= threshold means member", for each threshold."""
    member, non_member = np.sort(scores[labels]), np.sort(scores[~labels])
    tp = len(member) - np.searchsorted(member, thresholds, side="left")
    fp = len(non_member) - np.searchsorted(non_member, thresholds, side="left")
    return tp, len(member) - tp, fp, len(non_member) - fp


def _best_threshold(scores: np.ndarray, labels: np.ndarray, *, delta: float, confidence: float) -> float:
    """The observed score that maximises the epsilon lower bound (ties: the larger TPR - FPR)."""
    candidates = np.unique(scores)
    tp, fn, fp, tn = _counts_at(scores, labels, candidates)
    bound = empirical_epsilon_lower_bounds(tp, fn, fp, tn, delta=delta, confidence=confidence)
    advantage = tp / (tp + fn) - fp / (fp + tn)
    return float(candidates[np.lexsort((advantage, bound))[-1]])


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR on the ROC curve whose FPR does not exceed ``target``."""
    return float(tpr[np.searchsorted(fpr, target + 1e-12, side="right") - 1])
