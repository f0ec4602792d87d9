"""What the three Anonymeter evaluators share: the rows column by column, the neighbour search, the result.

The evaluators ``singling_out``, ``linkability`` and ``inference`` follow
Giomi, Boenisch, Wehmeyer and Tasnadi 2023, "A unified framework for
quantifying privacy risk in synthetic data" (PoPETs 2023(2)), and its
reference implementation Anonymeter (``src/anonymeter/evaluators/``). Every
evaluator is built from (synthetic, train, control, schema, rng, parameters)
and ``evaluate()`` returns frozen ``RiskResult`` values. Rules they all obey:

1. Three sets of rows: ``synthetic`` (the release, all the attacker sees of the
   generator), ``train`` (its training rows: the targets whose risk is
   measured) and ``control`` (rows of the same population never used in
   training). Each is a frame with exactly the schema's modelled columns
   (``features.check_columns``) and at least one row; anything else is a
   ``ValueError`` naming the set. ``rng`` must be a ``numpy.random.Generator``
   (``TypeError``): every random draw comes from it, so a seed reproduces a run.
2. Rows are read in the schema-only attack space of ``audit/features.py``,
   column by column. A column's *block* is its slice of that space: a numeric
   column's position on its public scale in [0, 1] (log scale for log
   columns), plus a missing flag when nullable; a categorical column's one-hot
   row, scaled so that two categories are at distance 1. Its *value* is the
   position, or the index of the category in the schema, NaN when missing
   (features.py rules 3 and 4 fix where each is in the block). Nothing is
   fitted to data.
3. Neighbours are Euclidean in the blocks of the attacker's columns.
   Anonymeter uses a Gower-like L1 distance over ranges fitted to the data;
   here the public bounds replace the fitted ranges, and one space serves every
   attack of the audit. Ties (common: integer and categorical columns) are
   broken by a random order of the synthetic rows, drawn anew for every
   search, so two searches never favour the same tied row by construction.
4. Targets: ``n_attacks`` rows drawn without replacement from train and as
   many from control. Default: min(``DEFAULT_N_ATTACKS``, len(train),
   len(control)); more than the smaller set holds is a ``ValueError``.
5. A result holds counts out of ``n_attacks`` trials each: successes on
   training targets, on control targets and of the random-guess baseline; the
   three Wilson rates; and ``risk``, the excess of training over control
   success of ``estimates.residual_risk``. ``to_dict`` writes these
   aggregates, the public parameters (column names, numbers) and notes: never
   a row, a value read from a row, a neighbour or a predicate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from hgan.audit.estimates import RiskEstimate, residual_risk, wilson
from hgan.audit.features import attack_features, check_columns
from hgan.release.schema import CategoricalColumn, NumericColumn, Schema

DEFAULT_N_ATTACKS = 2000  # rule 4; a 95% Wilson interval of a rate is then at most +-0.022 wide

Parameter = int | float | str | list[str]


# -- the result (rule 5) -----------------------------------------------------------

@dataclass(frozen=True)
class RiskResult:
    """Aggregates of one Anonymeter evaluation (rule 5): counts out of ``n_attacks``, rates and risk."""

    attack_id: str
    n_attacks: int
    successes_train: int
    successes_control: int
    successes_baseline: int
    train_rate: RiskEstimate
    control_rate: RiskEstimate
    baseline_rate: RiskEstimate
    risk: RiskEstimate
    parameters: dict[str, Parameter]
    notes: str

    @classmethod
    def from_counts(cls, attack_id: str, n_attacks: int, *, train: int, control: int, baseline: int,
                    confidence: float, parameters: dict[str, Parameter], notes: str) -> RiskResult:
        """The result of ``train``, ``control`` and ``baseline`` successes out of ``n_attacks`` each."""
        return cls(attack_id=attack_id, n_attacks=n_attacks, successes_train=train, successes_control=control,
                   successes_baseline=baseline,
                   train_rate=wilson(train, n_attacks, confidence),
                   control_rate=wilson(control, n_attacks, confidence),
                   baseline_rate=wilson(baseline, n_attacks, confidence),
                   risk=residual_risk(train, n_attacks, control, n_attacks, confidence),
                   parameters=parameters, notes=notes)

    def to_dict(self) -> dict[str, object]:
        return {"attack_id": self.attack_id, "n_attacks": self.n_attacks,
                "successes": {"train": self.successes_train, "control": self.successes_control,
                              "baseline": self.successes_baseline},
                "rates": {"train": self.train_rate.to_dict(), "control": self.control_rate.to_dict(),
                          "baseline": self.baseline_rate.to_dict()},
                "risk": self.risk.to_dict(),
                "parameters": {k: list(v) if isinstance(v, list) else v for k, v in self.parameters.items()},
                "notes": self.notes}


def set_sizes(synthetic: Rows, train: Rows, control: Rows) -> dict[str, Parameter]:
    """The sizes of the three sets, as result parameters."""
    return {"rows_synthetic": len(synthetic), "rows_train": len(train), "rows_control": len(control)}


# -- the rows, column by column (rules 1 and 2) ---------------------------------------

class Rows:
    """One set of rows in the attack space, kept column by column (rule 2)."""

    def __init__(self, names: tuple[str, ...], blocks: dict[str, np.ndarray], values: np.ndarray) -> None:
        self.names, self._blocks, self.values = names, blocks, values

    @classmethod
    def encode(cls, frame: pd.DataFrame, schema: Schema, role: str) -> Rows:
        """Check ``frame`` (called ``role`` in messages) and read it column by column (rules 1 and 2)."""
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"{role}: expected a pandas DataFrame, got {type(frame).__name__}")
        check_columns(frame, schema, role)
        if len(frame) < 1:
            raise ValueError(f"{role}: no rows; the attack needs at least one")
        blocks = {col.name: _block(frame, col, role) for col in schema.modelled}
        values = np.column_stack([_value(blocks[col.name], col) for col in schema.modelled])
        return cls(tuple(blocks), blocks, values)

    def __len__(self) -> int:
        return len(self.values)

    def features(self, columns: Sequence[str]) -> np.ndarray:
        """(n, d) points of ``columns`` in the attack space: their blocks side by side."""
        return np.hstack([self._blocks[name] for name in columns])

    def column(self, name: str) -> np.ndarray:
        """The value of one column (rule 2): position or category index, NaN when missing."""
        return self.values[:, self.names.index(name)]

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.names, {k: b[index] for k, b in self._blocks.items()}, self.values[index])


def encode_sets(synthetic: pd.DataFrame, train: pd.DataFrame, control: pd.DataFrame, schema: Schema,
                rng: np.random.Generator) -> tuple[Rows, Rows, Rows]:
    """Rule 1: check the generator and the three sets; read each (rule 2)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (numpy.random.default_rng(seed))")
    return (Rows.encode(synthetic, schema, "synthetic"), Rows.encode(train, schema, "train"),
            Rows.encode(control, schema, "control"))


def _block(frame: pd.DataFrame, col: NumericColumn | CategoricalColumn, role: str) -> np.ndarray:
    """The column's slice of the attack space: ``attack_features`` of a schema holding only that column."""
    alone = Schema(columns=(dataclasses.replace(col, role="feature"),))
    try:
        return attack_features(frame, alone)
    except ValueError as exc:  # the codec names the column; say which set of rows
        raise ValueError(f"{role}: {exc}") from exc


def _value(block: np.ndarray, col: NumericColumn | CategoricalColumn) -> np.ndarray:
    """Position or category index from a block (features.py rules 3 and 4), NaN when missing."""
    if isinstance(col, CategoricalColumn):
        value = block.argmax(axis=1).astype(np.float64)
        missing = value == len(col.categories)  # the missing code comes after the categories
    else:
        value = block[:, 0].copy()
        missing = block[:, 1] > 0 if col.nullable else np.zeros(len(value), dtype=bool)
    value[missing] = np.nan
    return value


def check_columns_known(columns: Sequence[str], schema: Schema, what: str) -> list[str]:
    """``columns`` as a list, each a modelled column named once; else ``ValueError`` naming ``what``."""
    if isinstance(columns, str):
        raise ValueError(f"{what}: expected a list of column names, got the string {columns!r}")
    names = [c.name for c in schema.modelled]
    columns = list(columns)
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValueError(f"{what}: {unknown} are not modelled columns of the schema; known: {', '.join(names)}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{what}: a column is named twice")
    return columns


# -- targets and neighbours (rules 3 and 4) --------------------------------------------

def resolve_n_attacks(n_attacks: int | None, train: Rows, control: Rows) -> int:
    """Rule 4: the number of targets drawn from each of train and control."""
    available = min(len(train), len(control))
    if n_attacks is None:
        return min(DEFAULT_N_ATTACKS, available)
    if isinstance(n_attacks, bool) or not isinstance(n_attacks, (int, np.integer)) or n_attacks < 1:
        raise ValueError(f"n_attacks must be a positive integer, got {n_attacks!r}")
    if n_attacks > available:
        smaller = "train" if len(train) <= len(control) else "control"
        raise ValueError(f"n_attacks={n_attacks} but {smaller} holds {available} rows; targets are drawn "
                         "without replacement, so pass at most that many")
    return int(n_attacks)


def draw_targets(rows: Rows, n: int, rng: np.random.Generator) -> Rows:
    """``n`` rows drawn without replacement (rule 4)."""
    return rows.take(rng.choice(len(rows), size=n, replace=False))


def nearest(targets: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n_targets, k) indices of each target's k nearest candidates, nearest first; ties at random (rule 3)."""
    order = rng.permutation(len(candidates))
    search = NearestNeighbors(n_neighbors=k).fit(candidates[order])
    return order[search.kneighbors(targets, return_distance=False)]
