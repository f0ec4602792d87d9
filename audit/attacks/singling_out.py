"""Singling out: do predicates read off the synthetic rows isolate exactly one real person?

Giomi et al. 2023 ("A unified framework for quantifying privacy risk in
synthetic data", PoPETs), section 3.1, after Cohen and Nissim 2020
("Towards formalizing the GDPR's notion of singling out", PNAS), and
Anonymeter's ``SinglingOutEvaluator``. The rules shared with the other
evaluators (rows, result) are those of ``_neighbours.py``; here:

1. A predicate is a conjunction of clauses on distinct columns, each
   ``value in [low, high]``, possibly negated; a missing value (NaN) is in no
   interval. That expresses ``==``, ``!=``, ``<=``, ``>=``, ``<``, ``>``,
   ``is missing`` and ``is present``; ``!=`` holds for a missing value, as in
   pandas. Values are those of ``_neighbours.py`` rule 2: positions on the
   public scale and category indices.
2. The attacker reads predicates off the distinct synthetic rows (copies of a
   record describe one record) and keeps those matching exactly one of them:
   ``univariate``   (id ``risk.singling_out.univariate``): for every column,
                    ``is missing`` if one row is, ``<= min`` and ``>= max`` of
                    the present values, and ``== v`` for every value held by
                    one row (Anonymeter ``univariate_singling_out_queries``);
   ``multivariate`` (id ``risk.singling_out.multivariate``): a random row and
                    ``n_cols`` random columns (default 3 as Anonymeter, or all
                    of a narrower table); per column ``is missing`` when the
                    row's value is, ``== v`` for a category, and for a number
                    ``>= v`` above the column's synthetic median, ``<= v``
                    otherwise (Anonymeter ``_query_from_record``); drawn in
                    batches until ``n_attacks`` are kept or ``max_attempts``
                    were drawn.
   Unlike Anonymeter, at most one predicate is kept per synthetic row singled
   out (chosen at random), at most ``n_attacks`` in all; the result's
   ``n_attacks`` is how many were kept. Anonymeter keeps every distinct
   predicate, and many then describe the same few outlying rows: their
   successes move together and the Wilson interval, which counts them as
   independent trials, is too narrow. On independent train and control sets
   (``mixed_frame``, 30 seeds, multivariate) the standardised difference of
   train and control success had a standard deviation of 1.74 with every
   predicate, and 0.96 with one per row (1 is what the interval assumes).
3. Success: a predicate matches exactly one training row; the control count
   is the same on the control rows. A predicate is likelier to single out in a
   small table, so both are counted on tables of one size: the larger set is
   cut, at random, to the size of the smaller (Anonymeter instead fits a
   model of successes against table size and extrapolates; the cut needs no
   model, at the price of power when train is much larger than control). The
   price is high: a predicate read off a synthetic row that copies a training
   row finds it in the cut only m/N of the time, and the other predicates,
   chosen to match no other synthetic row, match fewer training rows than
   control rows, so verbatim copies of rotterdam (2,386 training, 596 control
   rows) score a univariate risk of 0.15 [0.09, 0.20] and a multivariate
   risk of 0, and noisy copies (numbers moved by 1% of their range) are not
   singled out at any size; linkability and the membership attacks catch
   both. Anonymeter's correction was tried and is not used: its model, fitted
   here to counts on random subsets (or to the exact expected counts) of 600
   control rows and extrapolated to 2,400 training rows of independent mixed
   tables, scaled the control count by 0.6 to 2.6 where a real 2,400-row
   control gave 1.1 to 1.9, and reported a risk of 0.2 for independent rows
   in one draw: m rows do not identify the count beyond m rows. The
   baseline draws as many predicates at random (Anonymeter ``_random_query``:
   random columns, a random distinct synthetic value of each, a random
   operator) and counts those singling out a training row.
4. ``risk``: the excess of training over control success
   (``estimates.residual_risk``).
5. Nothing row-level leaves the module: the result holds the mode,
   ``n_cols`` and counts, never a predicate (its bounds are values of
   synthetic rows, which may copy a patient's).
6. Bad parameters (an unknown mode; ``n_cols`` outside 1..columns;
   ``n_attacks`` or ``max_attempts`` below 1) are a ``ValueError`` naming
   them; so is a synthetic set in which no predicate singles out a row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hgan.audit.attacks._neighbours import DEFAULT_N_ATTACKS, RiskResult, encode_sets, set_sizes
from hgan.release.schema import CategoricalColumn, Schema

MODES = ("univariate", "multivariate")
ATTACK_IDS = tuple(f"risk.singling_out.{mode}" for mode in MODES)
DEFAULT_N_COLS = 3  # rule 2; Anonymeter's default
ATTEMPTS_PER_ATTACK = 100  # rule 2: default max_attempts = this x n_attacks
_BLOCK_BYTES = 32 * 2**20  # Predicates.counts: about this much memory per (predicates x rows) block
_SCREENS = (256, 2048)  # singles_out: row counts of the cheap first passes

# operator codes (rule 1)
EQ, NE, LE, GE, LT, GT, ISNA, NOTNA = range(8)
_NUMERIC_OPS = np.array([EQ, NE, GT, LT, GE, LE])  # Anonymeter _random_operator("numerical")
_CATEGORY_OPS = np.array([EQ, NE])  # _random_operator("categorical")
_MISSING_OPS = np.array([ISNA, NOTNA])  # _random_operator("boolean"), on isna()

__all__ = ["ATTACK_IDS", "DEFAULT_N_COLS", "MODES", "RiskResult", "SinglingOutEvaluator"]


# -- predicates (rule 1) -------------------------------------------------------------

@dataclass(frozen=True)
class Predicates:
    """P conjunctions of m clauses: ``value[columns] in [low, high]``, XOR ``negate`` (rule 1)."""

    columns: np.ndarray  # (P, m) int: the column of each clause
    low: np.ndarray  # (P, m) float
    high: np.ndarray  # (P, m) float
    negate: np.ndarray  # (P, m) bool

    @classmethod
    def build(cls, columns: np.ndarray, op: np.ndarray, value: np.ndarray) -> Predicates:
        """From (P, m) arrays of columns, operator codes and values (ignored by ``ISNA`` and ``NOTNA``)."""
        unbounded = (op == ISNA) | (op == NOTNA)
        with np.errstate(invalid="ignore"):
            low = np.select([unbounded | (op == LE) | (op == LT), op == GT],
                            [-np.inf, np.nextafter(value, np.inf)], default=value)
            high = np.select([unbounded | (op == GE) | (op == GT), op == LT],
                             [np.inf, np.nextafter(value, -np.inf)], default=value)
        return cls(columns, low, high, (op == NE) | (op == ISNA))

    def __len__(self) -> int:
        return len(self.columns)

    def take(self, index: np.ndarray | slice) -> Predicates:
        return Predicates(self.columns[index], self.low[index], self.high[index], self.negate[index])

    @classmethod
    def concat(cls, parts: list[Predicates]) -> Predicates:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("columns", "low", "high", "negate")))

    def counts(self, values: np.ndarray) -> np.ndarray:
        """(P,) how many rows of ``values`` (n, columns) each predicate matches."""
        by_column = np.ascontiguousarray(values.T)
        block = max(1, _BLOCK_BYTES // max(1, values.shape[0] * 8))
        out = np.empty(len(self), dtype=np.int64)
        for start in range(0, len(self), block):
            part = self.take(slice(start, start + block))
            match = np.ones((len(part), values.shape[0]), dtype=bool)
            for j in range(part.columns.shape[1]):
                x = by_column[part.columns[:, j]]
                match &= ((x >= part.low[:, j, None]) & (x <= part.high[:, j, None])) ^ part.negate[:, j, None]
            out[start:start + block] = match.sum(axis=1)
        return out


def singles_out(predicates: Predicates, values: np.ndarray) -> np.ndarray:
    """Indices of the predicates that match exactly one row of ``values``.

    Most candidates match many rows, so they are first counted on the first
    ``_SCREENS`` rows: one that matches two of those matches two of all.
    """
    kept = np.arange(len(predicates))
    for size in _SCREENS:
        if size < len(values):
            kept = kept[predicates.take(kept).counts(values[:size]) <= 1]
    return kept[predicates.take(kept).counts(values) == 1]


# -- the attacker's predicates, read off the synthetic rows (rule 2) ----------------------

def univariate_predicates(values: np.ndarray, numeric: np.ndarray) -> tuple[Predicates, np.ndarray]:
    """Every one-column predicate of rule 2 that singles out a row of ``values``, and that row."""
    columns, ops, found, rows = [], [], [], []
    for j in range(values.shape[1]):
        for op, value, row in _univariate_clauses(values[:, j], numeric[j]):
            columns.append(j)
            ops.append(op)
            found.append(value)
            rows.append(row)
    shape = (len(columns), 1)
    predicates = Predicates.build(np.reshape(columns, shape).astype(np.int64),
                                  np.reshape(ops, shape).astype(np.int64), np.reshape(found, shape).astype(float))
    return predicates, np.array(rows, dtype=np.int64)


def _univariate_clauses(x: np.ndarray, numeric: bool) -> list[tuple[int, float, int]]:
    """(operator, value, row singled out) of one column (rule 2, univariate)."""
    missing = np.flatnonzero(np.isnan(x))
    present = np.flatnonzero(~np.isnan(x))
    distinct, first, count = np.unique(x[present], return_index=True, return_counts=True)
    first = present[first]
    out = [(ISNA, np.nan, int(missing[0]))] if len(missing) == 1 else []
    if numeric and len(distinct) and count[0] == 1:
        out.append((LE, float(distinct[0]), int(first[0])))
    if numeric and len(distinct) and count[-1] == 1:
        out.append((GE, float(distinct[-1]), int(first[-1])))
    return out + [(EQ, float(v), int(r)) for v, r in zip(distinct[count == 1], first[count == 1])]


def multivariate_predicates(values: np.ndarray, numeric: np.ndarray, n_cols: int, n_wanted: int,
                            max_attempts: int, rng: np.random.Generator) -> tuple[Predicates, np.ndarray]:
    """Up to ``n_wanted`` predicates of rule 2 (multivariate), one per row of ``values`` singled out, and the rows."""
    medians = _medians(values, numeric)
    found = Predicates.build(*(np.empty((0, n_cols), dtype=t) for t in (np.int64, np.int64, np.float64)))
    rows_found = np.empty(0, dtype=np.int64)
    attempts = 0
    while len(found) < n_wanted and attempts < max_attempts:
        rate = len(found) / attempts if attempts else 1.0  # share of attempts kept so far
        batch = min(int(2 * (n_wanted - len(found)) / max(rate, 0.01)) + 1, max_attempts - attempts)
        attempts += batch
        rows = rng.integers(len(values), size=batch)
        columns = np.sort(_random_columns(batch, values.shape[1], n_cols, rng), axis=1)
        v = values[rows[:, None], columns]
        with np.errstate(invalid="ignore"):
            op = np.where(np.isnan(v), ISNA, np.where(numeric[columns], np.where(v > medians[columns], GE, LE), EQ))
        kept = singles_out(candidates := Predicates.build(columns, op, v), values)
        # a predicate holds for the row it was read off, so the row it singles out is that row
        found, rows_found = Predicates.concat([found, candidates.take(kept)]), np.concatenate([rows_found, rows[kept]])
        first = _first_per_row(rows_found)
        found, rows_found = found.take(first), rows_found[first]
    return found.take(slice(0, n_wanted)), rows_found[:n_wanted]


def random_predicates(values: np.ndarray, numeric: np.ndarray, n_cols: int, n: int,
                      rng: np.random.Generator) -> Predicates:
    """The baseline's ``n`` predicates (rule 3): random columns, distinct synthetic values and operators."""
    columns = np.sort(_random_columns(n, values.shape[1], n_cols, rng), axis=1)
    v = _random_values(values, columns, rng)
    shape = columns.shape
    op = np.where(np.isnan(v), rng.choice(_MISSING_OPS, size=shape),
                  np.where(numeric[columns], rng.choice(_NUMERIC_OPS, size=shape),
                           rng.choice(_CATEGORY_OPS, size=shape)))
    return Predicates.build(columns, op, v)


def _first_per_row(rows: np.ndarray) -> np.ndarray:
    """Indices of the first entry for each distinct row, in their order (rule 2: one predicate per row)."""
    _, first = np.unique(rows, return_index=True)
    return np.sort(first)


def _random_columns(n: int, n_columns: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n_cols) column indices, each row ``n_cols`` distinct columns drawn at random."""
    return np.argsort(rng.random((n, n_columns)), axis=1)[:, :n_cols]


def _random_values(values: np.ndarray, columns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each entry of ``columns``, one of that column's distinct values (missing included) at random."""
    distinct = [np.unique(values[:, j]) for j in range(values.shape[1])]  # NaNs fold into one
    sizes = np.array([len(d) for d in distinct])
    table = np.full((len(distinct), sizes.max()), np.nan)
    for j, d in enumerate(distinct):
        table[j, :len(d)] = d
    return table[columns, (rng.random(columns.shape) * sizes[columns]).astype(np.int64)]


def _medians(values: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """The median of each numeric column's present values (NaN for categories and all-missing columns)."""
    medians = np.full(values.shape[1], np.nan)
    for j in np.flatnonzero(numeric):
        present = values[~np.isnan(values[:, j]), j]
        if len(present):
            medians[j] = np.median(present)
    return medians


# -- the evaluator (rules 3 and 4) -----------------------------------------------------------

class SinglingOutEvaluator:
    """Construct with the rows and parameters (checked here); ``evaluate()`` runs attack, control and baseline."""

    def __init__(self, synthetic: pd.DataFrame, train: pd.DataFrame, control: pd.DataFrame, schema: Schema,
                 rng: np.random.Generator, *, mode: str = "multivariate", n_cols: int | None = None,
                 n_attacks: int = DEFAULT_N_ATTACKS, max_attempts: int | None = None,
                 confidence: float = 0.95) -> None:
        self._synthetic, self._train, self._control = encode_sets(synthetic, train, control, schema, rng)
        self._rng = rng
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self._mode = mode
        n_columns = len(schema.modelled)
        if mode == "univariate":
            self._n_cols = 1
        else:
            self._n_cols = _check_count("n_cols", min(DEFAULT_N_COLS, n_columns) if n_cols is None else n_cols,
                                        n_columns)
        self._n_attacks = _check_count("n_attacks", n_attacks)
        self._max_attempts = _check_count("max_attempts", ATTEMPTS_PER_ATTACK * self._n_attacks
                                          if max_attempts is None else max_attempts)
        self._numeric = np.array([not isinstance(c, CategoricalColumn) for c in schema.modelled])
        self._confidence = confidence

    def evaluate(self) -> RiskResult:
        """Rules 2-4; every call draws new predicates and cuts from ``rng``."""
        synthetic = _distinct_rows(self._synthetic.values)
        predicates = self._attack_predicates(synthetic)
        n = len(predicates)
        if n == 0:
            raise ValueError(f"synthetic: no {self._mode} predicate singles out one of the "
                             f"{len(synthetic)} distinct synthetic rows; the attack cannot run")
        train, control = _same_size(self._train.values, self._control.values, self._rng)
        baseline = random_predicates(synthetic, self._numeric, self._n_cols, n, self._rng)
        return RiskResult.from_counts(
            ATTACK_IDS[MODES.index(self._mode)], n, train=_singled_out(predicates, train),
            control=_singled_out(predicates, control), baseline=_singled_out(baseline, train),
            confidence=self._confidence,
            parameters={"mode": self._mode, "n_cols": self._n_cols, "rows_compared": len(train),
                        **set_sizes(self._synthetic, self._train, self._control)},
            notes=(f"{n} {self._mode} predicates read off {len(synthetic)} distinct synthetic rows, each singling "
                   f"out a different one of them; success: a predicate matches exactly one of {len(train)} "
                   f"training rows (control: of {len(control)} control rows); baseline: {n} random predicates"))

    def _attack_predicates(self, synthetic: np.ndarray) -> Predicates:
        """Rule 2: at most ``n_attacks`` predicates, one per synthetic row singled out, in random order."""
        if self._mode == "multivariate":
            return multivariate_predicates(synthetic, self._numeric, self._n_cols, self._n_attacks,
                                           self._max_attempts, self._rng)[0]
        predicates, rows = univariate_predicates(synthetic, self._numeric)
        shuffled = self._rng.permutation(len(predicates))
        return predicates.take(shuffled[_first_per_row(rows[shuffled])][:self._n_attacks])


def _singled_out(predicates: Predicates, values: np.ndarray) -> int:
    """How many predicates match exactly one row of ``values`` (rule 3)."""
    return int((predicates.counts(values) == 1).sum())


def _distinct_rows(values: np.ndarray) -> np.ndarray:
    """The distinct rows of ``values`` (missing equal to missing), in order of first appearance."""
    key = np.where(np.isnan(values), -1.0, values)  # values are >= 0: positions and category indices
    _, first = np.unique(key, axis=0, return_index=True)
    return values[np.sort(first)]


def _same_size(train: np.ndarray, control: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rule 3: the larger set cut at random to the size of the smaller."""
    m = min(len(train), len(control))
    cut = [rows if len(rows) == m else rows[np.sort(rng.choice(len(rows), size=m, replace=False))]
           for rows in (train, control)]
    return cut[0], cut[1]


def _check_count(name: str, value: int, most: int | None = None) -> int:
    """Rule 6: a positive integer, at most ``most``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
            or (most is not None and value > most):
        limit = f"from 1 to {most}" if most is not None else "of at least 1"
        raise ValueError(f"{name} must be an integer {limit}, got {value!r}")
    return int(value)
