"""Linkability: can the synthetic rows join two records of the same person?

Giomi et al. 2023 ("A unified framework for quantifying privacy risk in
synthetic data", PoPETs), section 3.2, and Anonymeter's
``LinkabilityEvaluator``. The attacker holds two datasets about the same
people that share no column, and uses the synthetic rows as a bridge. The
rules shared with the other evaluators (rows, distance, targets, result) are
those of ``_neighbours.py``; here:

1. The attacker's columns are two disjoint, non-empty lists of modelled
   columns, A and B (``aux_columns``): the quasi-identifier sets of the schema
   or of the policy. Default: the modelled columns in schema order,
   alternately A and B (a rule on the public schema, not on data).
2. Attack on one target: its ``n_neighbours`` nearest synthetic rows on the
   columns A, and on the columns B; the target is linked, a success, when the
   two sets share a synthetic row (Anonymeter ``LinkabilityIndexes``).
3. The same attack on as many control targets; the baseline draws, for each
   training target, two random sets of ``n_neighbours`` synthetic rows.
4. ``risk``: the excess of training over control success
   (``estimates.residual_risk``), id ``risk.linkability``.
5. ``n_neighbours`` is at least 1 and at most the number of synthetic rows;
   otherwise, or when A and B are empty, overlap or name unknown columns, a
   ``ValueError`` that names the problem. The result names the columns of A
   and B (public) and counts; never a target, a neighbour or a value.
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
from hgan.release.schema import Schema

ATTACK_ID = "risk.linkability"

__all__ = ["ATTACK_ID", "LinkabilityEvaluator", "RiskResult", "default_aux_columns"]


def default_aux_columns(schema: Schema) -> tuple[list[str], list[str]]:
    """Rule 1's default: the modelled columns, alternately A and B, in schema order."""
    names = [c.name for c in schema.modelled]
    return names[0::2], names[1::2]


class LinkabilityEvaluator:
    """Construct with the rows and parameters (checked here); ``evaluate()`` runs attack, control and baseline."""

    def __init__(self, synthetic: pd.DataFrame, train: pd.DataFrame, control: pd.DataFrame, schema: Schema,
                 rng: np.random.Generator, *, aux_columns: tuple[Sequence[str], Sequence[str]] | None = None,
                 n_neighbours: int = 1, n_attacks: int | None = None, confidence: float = 0.95) -> None:
        self._synthetic, self._train, self._control = encode_sets(synthetic, train, control, schema, rng)
        self._rng = rng
        self._columns = _check_aux_columns(default_aux_columns(schema) if aux_columns is None else aux_columns, schema)
        self._k = _check_neighbours(n_neighbours, len(self._synthetic))
        self._n_attacks = resolve_n_attacks(n_attacks, self._train, self._control)
        self._confidence = confidence

    def evaluate(self) -> RiskResult:
        """Rules 2-4; every call draws new targets and tie orders from ``rng``."""
        n, rng = self._n_attacks, self._rng
        targets = [draw_targets(rows, n, rng) for rows in (self._train, self._control)]
        links = self._links(targets)
        baseline = _linked(*(_random_sets(len(self._synthetic), n, self._k, rng) for _ in range(2)))
        a, b = self._columns
        return RiskResult.from_counts(
            ATTACK_ID, n, train=int(links[:n].sum()), control=int(links[n:].sum()), baseline=int(baseline.sum()),
            confidence=self._confidence,
            parameters={"columns_a": a, "columns_b": b, "n_neighbours": self._k,
                        **set_sizes(self._synthetic, self._train, self._control)},
            notes=(f"{n} training and {n} control targets; a target is linked when its {self._k} nearest "
                   "synthetic rows on columns A and on columns B share a row; baseline: random rows"))

    def _links(self, targets: list[Rows]) -> np.ndarray:
        """Rule 2 for all ``targets`` (training, then control): one neighbour search per side."""
        sides = [nearest(np.vstack([t.features(columns) for t in targets]), self._synthetic.features(columns),
                         self._k, self._rng) for columns in self._columns]
        return _linked(*sides)


def _linked(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: do the index sets ``a[i]`` and ``b[i]`` share an element?"""
    return (a[:, :, None] == b[:, None, :]).any(axis=(1, 2))


def _random_sets(n_rows: int, n_sets: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n_sets, k) indices: each row k distinct rows drawn at random (the baseline, rule 3)."""
    return np.array([rng.choice(n_rows, size=k, replace=False) for _ in range(n_sets)]).reshape(n_sets, k)


def _check_aux_columns(aux_columns: tuple[Sequence[str], Sequence[str]],
                       schema: Schema) -> tuple[list[str], list[str]]:
    """Rule 1: two non-empty, disjoint lists of modelled columns."""
    if not isinstance(aux_columns, (tuple, list)) or len(aux_columns) != 2:
        raise ValueError("aux_columns: expected two lists of column names (A, B)")
    a, b = (check_columns_known(cols, schema, f"aux_columns {side}") for cols, side in zip(aux_columns, "AB"))
    if not a or not b:
        raise ValueError("aux_columns: A and B each need at least one column")
    shared = sorted(set(a) & set(b))
    if shared:
        raise ValueError(f"aux_columns: {shared} are in both A and B; the attacker's two datasets share no column")
    return a, b


def _check_neighbours(n_neighbours: int, n_synthetic: int) -> int:
    """Rule 5."""
    if isinstance(n_neighbours, bool) or not isinstance(n_neighbours, (int, np.integer)) \
            or not 1 <= n_neighbours <= n_synthetic:
        raise ValueError(f"n_neighbours must be an integer from 1 to the {n_synthetic} synthetic rows, "
                         f"got {n_neighbours!r}")
    return int(n_neighbours)
