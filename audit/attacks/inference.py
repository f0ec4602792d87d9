"""Attribute inference: what do the synthetic rows tell about a secret column of a target?

Giomi et al. 2023 ("A unified framework for quantifying privacy risk in
synthetic data", PoPETs), section 3.3, and Anonymeter's
``InferenceEvaluator``. The attacker knows some columns of a target (the
auxiliary columns) and guesses one more (the secret). The rules shared with
the other evaluators (rows, distance, targets, result) are those of
``_neighbours.py``; here:

1. Secrets: ``secrets`` (default: every modelled column in turn, in schema
   order; the target column is one of them). For each, the auxiliary columns
   are ``aux_columns`` (default: all the other modelled columns); a secret
   among its own auxiliary columns is a ``ValueError``. One result per secret,
   id ``risk.inference.<column>``.
2. Attack on one target: the nearest synthetic row on the auxiliary columns;
   the guess is that row's secret.
3. A guess is right when, for a categorical secret, it is the same category
   (missing counts as a category); for a numeric secret, both are missing, or
   both are present and at most ``tolerance`` apart on the column's public
   scale (the position in [0, 1] of ``audit/features.py``; log scale for log
   columns). Anonymeter asks |guess - secret| <= tolerance |guess|; a share of
   the public range keeps the rule schema-only and defined at 0. Default
   tolerance 0.05, Anonymeter's. It must lie in [0, 1) (``ValueError``).
4. The same attack on as many control targets; the baseline guesses, for each
   training target, the secret of a synthetic row drawn at random. Each
   secret gets its own targets (as one Anonymeter evaluator per secret), so
   the results of different secrets do not share the luck of one draw.
5. ``risk``: the excess of training over control success
   (``estimates.residual_risk``). The result names the secret and the
   auxiliary columns (public) and counts; never a target, a guess or a value.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from hgan.audit.attacks._neighbours import (
    RiskResult,
    Rows,
    check_columns_known,
    draw_targets,
    encode_sets,
    nearest,
    resolve_n_attacks,
    set_sizes,
)
from hgan.release.schema import CategoricalColumn, Schema

ATTACK_ID_PREFIX = "risk.inference."
DEFAULT_TOLERANCE = 0.05  # rule 3; Anonymeter's evaluate_inference_guesses
_ROUNDING = 1e-12  # rule 3: "at most" survives the rounding of positions (k / (values - 1))

__all__ = ["ATTACK_ID_PREFIX", "DEFAULT_TOLERANCE", "InferenceEvaluator", "RiskResult"]


class InferenceEvaluator:
    """Construct with the rows and parameters (checked here); ``evaluate()`` returns one result per secret."""

    def __init__(self, synthetic: pd.DataFrame, train: pd.DataFrame, control: pd.DataFrame, schema: Schema,
                 rng: np.random.Generator, *, secrets: Sequence[str] | None = None,
                 aux_columns: Sequence[str] | None = None, n_attacks: int | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, confidence: float = 0.95) -> None:
        self._synthetic, self._train, self._control = encode_sets(synthetic, train, control, schema, rng)
        self._rng = rng
        names = [c.name for c in schema.modelled]
        self._secrets = check_columns_known(names if secrets is None else secrets, schema, "secrets")
        if not self._secrets:
            raise ValueError("secrets: no column named; pass at least one, or None for every modelled column")
        self._aux = {s: _aux_columns(s, names, aux_columns, schema) for s in self._secrets}
        self._categorical = {c.name for c in schema.modelled if isinstance(c, CategoricalColumn)}
        if not 0.0 <= tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1) (a share of the public range), got {tolerance}")
        self._tolerance = tolerance
        self._n_attacks = resolve_n_attacks(n_attacks, self._train, self._control)
        self._confidence = confidence

    def evaluate(self) -> tuple[RiskResult, ...]:
        """Rules 2-5 for every secret, in order; every call draws new targets and tie orders from ``rng``."""
        return tuple(self._evaluate_secret(secret) for secret in self._secrets)

    def _evaluate_secret(self, secret: str) -> RiskResult:
        n, aux = self._n_attacks, self._aux[secret]
        targets = [draw_targets(rows, n, self._rng) for rows in (self._train, self._control)]
        right = self._right(self._guesses(secret, aux, targets),
                            np.concatenate([t.column(secret) for t in targets]), secret)
        random_rows = self._rng.integers(len(self._synthetic), size=n)
        baseline = self._right(self._synthetic.column(secret)[random_rows], targets[0].column(secret), secret)
        rule = "the same category" if secret in self._categorical else f"within {self._tolerance:g} of the public range"
        return RiskResult.from_counts(
            ATTACK_ID_PREFIX + secret, n, train=int(right[:n].sum()), control=int(right[n:].sum()),
            baseline=int(baseline.sum()), confidence=self._confidence,
            parameters={"secret": secret, "aux_columns": aux, "tolerance": self._tolerance,
                        **set_sizes(self._synthetic, self._train, self._control)},
            notes=(f"{n} training and {n} control targets; guess: the secret of the nearest synthetic row on the "
                   f"{len(aux)} auxiliary columns; right: {rule}; baseline: the secret of a random synthetic row"))

    def _guesses(self, secret: str, aux: list[str], targets: list[Rows]) -> np.ndarray:
        """Rule 2: for all ``targets`` in turn, the secret of the nearest synthetic row on the columns ``aux``."""
        points = np.vstack([t.features(aux) for t in targets])
        rows = nearest(points, self._synthetic.features(aux), 1, self._rng)[:, 0]
        return self._synthetic.column(secret)[rows]

    def _right(self, guesses: np.ndarray, secrets: np.ndarray, secret: str) -> np.ndarray:
        """Rule 3, on values (position or category index, NaN when missing)."""
        both_missing = np.isnan(guesses) & np.isnan(secrets)
        if secret in self._categorical:
            return both_missing | (guesses == secrets)
        return both_missing | (np.abs(guesses - secrets) <= self._tolerance + _ROUNDING)


def _aux_columns(secret: str, names: list[str], aux_columns: Sequence[str] | None, schema: Schema) -> list[str]:
    """Rule 1: the attacker's columns for ``secret``."""
    if aux_columns is None:
        aux = [name for name in names if name != secret]
    else:
        aux = check_columns_known(aux_columns, schema, "aux_columns")
    if secret in aux:
        raise ValueError(f"aux_columns: the secret {secret!r} is among the attacker's known columns")
    if not aux:
        raise ValueError(f"aux_columns: no column left for the attacker to know besides the secret {secret!r}")
    return aux
