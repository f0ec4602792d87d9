"""Propose a first schema from a CSV file: a DRAFT, to be reviewed by a person.

This module reads the private rows, so what it proposes is data-derived: the
schema it returns carries ``draft = true`` and training refuses it until someone
has checked every bound and category list against public knowledge and deleted
that line (rule 7 of ``release/schema.py``).

Rules:
1. The file is read as ``load_table`` reads it; missing values are spelled as
   ``DEFAULT_NA_VALUES``. A column is ``nullable`` iff it has a missing cell.
2. Roles: a column named in ``id_columns`` is an ``id``, in ``drop_columns`` a
   ``drop``; ``target`` (if given) is the ``target``. A column with no values,
   or that looks like an identifier or free text, is a ``drop``: text with more
   than ``MANY_DISTINCT`` distinct values that are more than half of its rows,
   or whole numbers that are all distinct (more than ``MANY_DISTINCT`` rows).
3. Types: a column whose every value parses as a finite number is numeric,
   ``integer`` if every value is whole. Whole numbers with at most
   ``MAX_CODES`` distinct values, all in ``[0, MAX_CODE]``, look like codes
   (0/1 flags, grades): categorical with integer categories. Any other column
   is categorical with its distinct stripped texts, sorted.
4. The target is categorical and not nullable: integer categories if all its
   values are whole numbers, else strings. Missing target values are an error.
5. Bounds are rounded outward so the data's extremes are not copied: the grid
   step is half the power of ten below the range (``10**floor(log10(max-min)) / 2``,
   at least ``MIN_INTEGER_STEP`` for integer columns, whose extremes would
   otherwise always lie on the grid); ``lower`` is floored and ``upper`` ceiled
   to it. The bounds always contain every value; an extreme already on the grid
   (such as 0) is kept.
6. ``transform = "log"`` when the column is non-negative and heavily
   right-skewed: ``upper > LOG_SKEW * (median + 1)``.
7. ``decimals`` of a non-integer column: the most digits written after the
   decimal point (the measurement's precision), at most ``MAX_DRAFT_DECIMALS``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from hgan.appliance.data import cell_text, na_set, parse_numbers, read_csv_text
from hgan.release.errors import InvalidInput
from hgan.release.schema import (
    DEFAULT_NA_VALUES, MAX_CATEGORIES, CategoricalColumn, Column, IgnoredColumn, NumericColumn, Schema,
)

MAX_CODES = 10  # at most this many distinct whole numbers ...
MAX_CODE = 20  # ... all in [0, MAX_CODE]: a code list, not a measurement
MANY_DISTINCT = 50  # more distinct values than this (and > half the rows): an identifier or free text
MIN_INTEGER_STEP = 5.0  # grid step of integer bounds: 1995..2003 -> 1995..2005
LOG_SKEW = 50  # upper > LOG_SKEW * (median + 1): heavy right tail, modelled as ln(1 + x - lower)
MAX_DRAFT_DECIMALS = 6

_NOTES = {
    "numeric": "bounds rounded outward from THE DATA: replace them with public limits (clinical range, units)",
    "categorical": "categories seen in THE DATA: complete or correct them from the public code list",
    "target": "classes seen in THE DATA: check them against the public definition of the outcome",
    "id": "identifier: never modelled, never released",
    "drop": "not modelled (named in drop_columns, or empty, or identifier-like / free text): review",
}


def draft_schema(path: str | Path, *, target: str | None = None,
                 id_columns: Iterable[str] = (), drop_columns: Iterable[str] = ()) -> Schema:
    """Propose a draft schema for the CSV at ``path`` (rules 1-6)."""
    source = str(path)
    frame = read_csv_text(path)
    if len(frame) == 0:
        raise InvalidInput("data.empty", f"{source}: the data has a header but no rows",
                           hint="the file needs at least one data row")
    names = [str(c) for c in frame.columns]
    ids, drops = _name_set(id_columns), _name_set(drop_columns)
    _check_names(source, names, target, ids, drops)
    na = na_set(DEFAULT_NA_VALUES)
    columns: list[Column] = []
    for i, name in enumerate(names):
        if name in ids or name in drops:
            columns.append(IgnoredColumn(name=name, role="id" if name in ids else "drop"))
            continue
        text, missing = cell_text(frame.iloc[:, i], na)
        if name == target:
            columns.append(_target(source, name, text, missing))
        else:
            columns.append(_feature(name, text[~missing], nullable=bool(missing.any())))
    return Schema(columns=tuple(columns), draft=True, source=source)


def _name_set(names: Iterable[str]) -> set[str]:
    return {names} if isinstance(names, str) else set(names)


def _check_names(source: str, names: list[str], target: str | None, ids: set[str], drops: set[str]) -> None:
    if any(not n.strip() for n in names):
        raise InvalidInput("data.columns", f"{source}: a column has no name in the header",
                           hint="give every column a name in the header row")
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        raise InvalidInput("data.columns", f"{source}: column(s) named twice in the header: "
                                           + ", ".join(f'"{n}"' for n in twice),
                           hint="give every column a distinct name")
    present = set(names)
    for label, wanted in (("target", [target] if target is not None else []),
                          ("id column", sorted(ids)), ("drop column", sorted(drops))):
        for name in wanted:
            if name not in present:
                raise InvalidInput("schema.invalid", f'{source}: the {label} "{name}" is not a column of the data',
                                   hint="spell the name exactly as in the header row")
    if target is not None and target in ids | drops:
        raise InvalidInput("schema.invalid", f'{source}: the target "{target}" is also named as an id or drop column',
                           hint="a column has one role")
    if ids & drops:
        raise InvalidInput("schema.invalid", f"{source}: a column is named both as an id and a drop column",
                           hint="a column has one role")


def _target(source: str, name: str, text: pd.Series, missing: np.ndarray) -> CategoricalColumn:
    """Rule 4: a categorical, non-nullable target with at least 2 classes."""
    if missing.any():
        raise InvalidInput("data.missing", f'{source}: column "{name}": {int(missing.sum())} row(s) have no '
                                           "value, but the target needs a class on every row",
                           hint="remove those rows, or choose another target")
    values = parse_numbers(text)
    if np.isfinite(values).all() and (values == np.floor(values)).all():
        cats: tuple[int | str, ...] = tuple(int(v) for v in np.unique(values))
    else:
        cats = tuple(sorted(text.unique()))
    if len(cats) < 2:
        raise InvalidInput("schema.invalid", f'{source}: the target "{name}" has {len(cats)} distinct value; '
                                             "a target needs at least 2 classes",
                           hint="choose a class label column as the target")
    return CategoricalColumn(name=name, categories=cats, role="target")


def _feature(name: str, present: pd.Series, *, nullable: bool) -> Column:
    """Rules 2 and 3 for one column; ``present`` holds its non-missing stripped texts."""
    if present.empty:
        return IgnoredColumn(name=name, role="drop")
    values = parse_numbers(present)
    if not np.isfinite(values).all():
        distinct = present.unique()
        if len(distinct) > MAX_CATEGORIES or (len(distinct) > MANY_DISTINCT and len(distinct) > len(present) / 2):
            return IgnoredColumn(name=name, role="drop")
        return CategoricalColumn(name=name, categories=tuple(sorted(distinct)), nullable=nullable)
    integer = bool((values == np.floor(values)).all())
    distinct = np.unique(values)
    if integer and len(distinct) <= MAX_CODES and distinct[0] >= 0 and distinct[-1] <= MAX_CODE:
        return CategoricalColumn(name=name, categories=tuple(int(v) for v in distinct), nullable=nullable)
    if integer and len(distinct) == len(values) > MANY_DISTINCT:
        return IgnoredColumn(name=name, role="drop")
    lower, upper = rounded_bounds(float(distinct[0]), float(distinct[-1]), integer=integer)
    skewed = lower >= 0 and upper > LOG_SKEW * (float(np.median(values)) + 1)
    return NumericColumn(name=name, lower=lower, upper=upper, integer=integer,
                         transform="log" if skewed else "none", nullable=nullable,
                         decimals=None if integer else decimals_written(present))


def decimals_written(present: pd.Series) -> int | None:
    """Rule 7: the most digits written after a decimal point, capped at ``MAX_DRAFT_DECIMALS``;
    None when a value is written in exponent notation."""
    text = present.str.strip()
    if text.str.contains("[eE]", regex=True).any():
        return None
    after = text.str.split(".", n=1).str[1].fillna("")
    return min(int(after.str.len().max()), MAX_DRAFT_DECIMALS)


def rounded_bounds(lo: float, hi: float, *, integer: bool) -> tuple[float, float]:
    """Rule 5: ``[lo, hi]`` widened outward to a grid of step ``10**floor(log10(hi - lo)) / 2``
    (at least ``MIN_INTEGER_STEP`` if ``integer``)."""
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    step = 10.0 ** math.floor(math.log10(span)) / 2
    if integer:
        step = max(step, MIN_INTEGER_STEP)
    lower = _on_grid(math.floor(lo / step) * step, step)
    upper = _on_grid(math.ceil(hi / step) * step, step)
    if lower > lo:  # float rounding put the grid point inside the data
        lower = _on_grid(lower - step, step)
    if upper < hi:
        upper = _on_grid(upper + step, step)
    if upper <= lower:
        upper = _on_grid(lower + step, step)
    return lower, upper


def _on_grid(x: float, step: float) -> float:
    """``x`` rounded to the decimals of ``step`` (drops float noise such as 0.30000000000000004)."""
    return float(round(x, max(0, 1 - math.floor(math.log10(step)))))


def render_draft(schema: Schema, *, source_name: str) -> str:
    """The draft as TOML, under a header that says it came from the data and must be reviewed.

    Each column block is preceded by a one-line comment saying what to review.
    The text loads back with ``Schema.load`` as an equal schema.
    """
    head, *blocks = schema.dumps().split("\n\n[[columns]]\n")
    if len(blocks) != len(schema.columns):
        raise RuntimeError("unexpected layout of Schema.dumps()")
    body = "".join(f"\n\n# {_note(col)}\n[[columns]]\n{block}" for col, block in zip(schema.columns, blocks))
    return _header(source_name) + head + body


def _note(col: Column) -> str:
    if col.role in ("target", "id", "drop"):
        return _NOTES[col.role]
    return _NOTES["numeric" if isinstance(col, NumericColumn) else "categorical"]


def _header(source_name: str) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in source_name)
    return (
        "# " + "=" * 76 + "\n"
        "# DRAFT SCHEMA, computed FROM THE DATA in: " + shown + "\n"
        "#\n"
        "# Every bound and category list below was read from the patient rows. Before\n"
        "# training, review EVERY column against PUBLIC knowledge (clinical ranges, units,\n"
        "# code lists) and widen or correct it: bounds must be public limits, not the\n"
        "# data's extremes; category lists must come from the code list, not from the\n"
        "# rows seen. Check the roles: identifiers -> \"id\"; columns measured after\n"
        "# baseline that leak the outcome, and free text -> \"drop\".\n"
        "#\n"
        "# Then delete the line `draft = true`. Training refuses a draft schema.\n"
        "# " + "=" * 76 + "\n"
    )
