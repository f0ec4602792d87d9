"""The schema: public metadata that declares every column of a table.

Rules (invariant 2 of DESIGN.md):
1. The schema is the only source of bounds, categories and transforms. Nothing
   that encodes or decodes rows may look at the data to find them.
2. Every column of the data is declared, in order, with a role: ``feature``
   (modelled), ``target`` (modelled; the generator is conditioned on it),
   ``id`` (never modelled, never released) or ``drop`` (never modelled).
3. A numeric column has finite public bounds ``lower < upper``; ``integer``
   columns have integral bounds; ``transform = "log"`` models
   ``ln(1 + x - lower)`` for heavy tails; ``decimals`` (optional, not for
   integer columns) is the public precision generated values are rounded to.
4. A categorical column lists all its categories, all strings or all integers,
   without repeats.
5. At most one target; it is categorical, not nullable, with >= 2 categories.
6. ``nullable`` says whether a missing value is a legal value, which is then
   modelled like any other.
7. A schema written by ``hgan schema draft`` carries ``draft = true``: it came
   from the data and is refused for training until a person has reviewed it
   against public knowledge and deleted that line.

The file is TOML::

    format = "hgan-schema/1"
    na_values = ["", "NA"]          # how missing values are spelled in CSV files

    [[columns]]
    name = "age"
    type = "numeric"                # or "categorical"
    lower = 24
    upper = 90
    integer = true
    transform = "none"              # or "log"
    decimals = 1                    # optional: round generated values (public precision)
    nullable = false
    role = "feature"                # or "target", "id", "drop"
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from hgan.release.errors import InvalidInput

FORMAT = "hgan-schema/1"
MAX_SCHEMA_BYTES = 1_000_000
MAX_COLUMNS = 2_000
MAX_CATEGORIES = 10_000
MAX_DECIMALS = 12
DEFAULT_NA_VALUES = ("", "NA", "N/A", "NaN", "nan", "NULL", "null", "None")

Role = Literal["feature", "target", "id", "drop"]
ROLES = ("feature", "target", "id", "drop")
TRANSFORMS = ("none", "log")
Category = Union[str, int]


@dataclass(frozen=True)
class NumericColumn:
    """A number in the public range [lower, upper]."""

    name: str
    lower: float
    upper: float
    integer: bool = False
    transform: str = "none"
    nullable: bool = False
    role: Role = "feature"
    decimals: int | None = None


@dataclass(frozen=True)
class CategoricalColumn:
    """One of a public list of categories (all strings or all integers)."""

    name: str
    categories: tuple[Category, ...]
    nullable: bool = False
    role: Role = "feature"


@dataclass(frozen=True)
class IgnoredColumn:
    """A column that is never modelled: an identifier or a dropped column."""

    name: str
    role: Role = "drop"


Column = Union[NumericColumn, CategoricalColumn, IgnoredColumn]


@dataclass(frozen=True)
class Schema:
    """All columns of a table, in file order. Validated on construction."""

    columns: tuple[Column, ...]
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES
    draft: bool = False
    source: str = field(default="<schema>", compare=False)

    def __post_init__(self) -> None:
        _check_schema(self)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def target(self) -> CategoricalColumn | None:
        """The target column, or None when the table has none."""
        for c in self.columns:
            if c.role == "target":
                assert isinstance(c, CategoricalColumn)
                return c
        return None

    @property
    def features(self) -> list[NumericColumn | CategoricalColumn]:
        """Modelled columns other than the target, in file order."""
        return [c for c in self.columns if c.role == "feature"]  # type: ignore[misc]

    @property
    def modelled(self) -> list[NumericColumn | CategoricalColumn]:
        """Feature and target columns, in file order: what a generator produces."""
        return [c for c in self.columns if c.role in ("feature", "target")]  # type: ignore[misc]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    # -- (de)serialisation -------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<schema>") -> Schema:
        """Build a schema from parsed TOML/JSON; every field is checked."""
        if not isinstance(raw, dict):
            _fail(source, "the schema must be a table of fields")
        _no_unknown_keys(source, "the schema", raw, {"format", "na_values", "draft", "columns"})
        if raw.get("format") != FORMAT:
            _fail(source, f'field "format" must be "{FORMAT}"')
        na_values = raw.get("na_values", list(DEFAULT_NA_VALUES))
        if not isinstance(na_values, list) or not all(isinstance(v, str) for v in na_values):
            _fail(source, 'field "na_values" must be a list of strings')
        draft = raw.get("draft", False)
        if not isinstance(draft, bool):
            _fail(source, 'field "draft" must be true or false')
        cols = raw.get("columns")
        if not isinstance(cols, list) or not cols:
            _fail(source, "the schema declares no columns; add one [[columns]] table per column")
        if len(cols) > MAX_COLUMNS:
            _fail(source, f"the schema declares {len(cols)} columns; at most {MAX_COLUMNS} are supported")
        columns = tuple(_column_from_dict(source, i, c) for i, c in enumerate(cols))
        return cls(columns=columns, na_values=tuple(na_values), draft=draft, source=source)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": FORMAT, "na_values": list(self.na_values)}
        if self.draft:
            out["draft"] = True
        out["columns"] = [_column_to_dict(c) for c in self.columns]
        return out

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read and validate a schema file (TOML)."""
        p = Path(path)
        try:
            size = p.stat().st_size
            if size > MAX_SCHEMA_BYTES:
                raise InvalidInput(
                    "schema.unreadable",
                    f"{p}: the schema file is {size} bytes; at most {MAX_SCHEMA_BYTES} are read",
                    hint="a schema declares columns only; check that this is the right file",
                )
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInput(
                "schema.unreadable", f"{p}: cannot read the schema file ({exc.strerror})",
                hint="check the path; `hgan schema draft DATA.csv` writes a first draft",
            ) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                "schema.unreadable", f"{p}: the schema file is not valid TOML ({exc})",
                hint="fix the syntax at the place named; see README for the format",
            ) from exc
        return cls.from_dict(raw, source=str(p))

    def dumps(self) -> str:
        """The schema as TOML text (round-trips through ``load``)."""
        lines = [f"format = {_toml_value(FORMAT)}"]
        if self.draft:
            lines.append("draft = true")
        lines.append(f"na_values = {_toml_value(list(self.na_values))}")
        for col in self.columns:
            lines.append("")
            lines.append("[[columns]]")
            for key, value in _column_to_dict(col).items():
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


# -- validation -----------------------------------------------------------

def _fail(source: str, message: str, hint: str = "") -> None:
    raise InvalidInput(
        "schema.invalid", f"{source}: {message}",
        hint=hint or "fix the schema file; see README ('The schema') for every field",
    )


def _no_unknown_keys(source: str, where: str, raw: dict, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        _fail(source, f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
                      f"allowed: {', '.join(sorted(allowed))}")


def _column_from_dict(source: str, index: int, raw: Any) -> Column:
    if not isinstance(raw, dict):
        _fail(source, f"column #{index + 1} must be a [[columns]] table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        _fail(source, f'column #{index + 1} needs a non-empty string "name"')
    where = f'column "{name}"'
    role = raw.get("role", "feature")
    if role not in ROLES:
        _fail(source, f'{where}: "role" must be one of {", ".join(ROLES)}')
    kind = raw.get("type")
    if role in ("id", "drop"):
        _no_unknown_keys(source, where, raw, {"name", "role", "type", "lower", "upper", "integer",
                                               "transform", "nullable", "categories"})
        return IgnoredColumn(name=name, role=role)
    nullable = raw.get("nullable", False)
    if not isinstance(nullable, bool):
        _fail(source, f'{where}: "nullable" must be true or false')
    if kind == "numeric":
        _no_unknown_keys(source, where, raw, {"name", "role", "type", "lower", "upper", "integer",
                                               "transform", "nullable", "decimals"})
        lower, upper = raw.get("lower"), raw.get("upper")
        for key, v in (("lower", lower), ("upper", upper)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                _fail(source, f'{where}: "{key}" must be a finite number (a public bound)')
        integer = raw.get("integer", False)
        if not isinstance(integer, bool):
            _fail(source, f'{where}: "integer" must be true or false')
        transform = raw.get("transform", "none")
        if transform not in TRANSFORMS:
            _fail(source, f'{where}: "transform" must be one of {", ".join(TRANSFORMS)}')
        decimals = raw.get("decimals")
        if decimals is not None and (isinstance(decimals, bool) or not isinstance(decimals, int)):
            _fail(source, f'{where}: "decimals" must be an integer')
        return NumericColumn(name=name, lower=float(lower), upper=float(upper), integer=integer,
                             transform=transform, nullable=nullable, role=role, decimals=decimals)
    if kind == "categorical":
        _no_unknown_keys(source, where, raw, {"name", "role", "type", "categories", "nullable"})
        cats = raw.get("categories")
        if not isinstance(cats, list) or not cats:
            _fail(source, f'{where}: "categories" must be a non-empty list')
        return CategoricalColumn(name=name, categories=tuple(cats), nullable=nullable, role=role)
    _fail(source, f'{where}: "type" must be "numeric" or "categorical"')
    raise AssertionError("unreachable")


def _check_schema(schema: Schema) -> None:
    src = schema.source
    if not 1 <= len(schema.columns) <= MAX_COLUMNS:
        _fail(src, f"the schema declares {len(schema.columns)} columns; 1 to {MAX_COLUMNS} are supported")
    seen: set[str] = set()
    for col in schema.columns:
        if not col.name.strip():
            _fail(src, "a column has an empty name")
        if col.name in seen:
            _fail(src, f'column "{col.name}" is declared twice')
        seen.add(col.name)
        if isinstance(col, NumericColumn):
            _check_numeric(src, col)
        elif isinstance(col, CategoricalColumn):
            _check_categorical(src, col)
    targets = [c for c in schema.columns if c.role == "target"]
    if len(targets) > 1:
        _fail(src, f"{len(targets)} columns have role \"target\"; at most one may")
    for t in targets:
        if not isinstance(t, CategoricalColumn) or t.nullable or len(t.categories) < 2:
            _fail(src, f'target column "{t.name}" must be categorical, not nullable, '
                       "with at least 2 categories")
    if not any(c.role in ("feature", "target") for c in schema.columns):
        _fail(src, 'no column has role "feature" or "target"; nothing would be modelled')


def _check_numeric(src: str, col: NumericColumn) -> None:
    where = f'column "{col.name}"'
    if not col.lower < col.upper:
        _fail(src, f'{where}: "lower" must be below "upper"')
    if col.integer and not (float(col.lower).is_integer() and float(col.upper).is_integer()):
        _fail(src, f'{where}: an integer column needs integral bounds')
    if col.transform not in TRANSFORMS:
        _fail(src, f'{where}: "transform" must be one of {", ".join(TRANSFORMS)}')
    if col.decimals is not None and (col.integer or not 0 <= col.decimals <= MAX_DECIMALS):
        _fail(src, f'{where}: "decimals" must be between 0 and {MAX_DECIMALS}, and only on non-integer columns')


def _check_categorical(src: str, col: CategoricalColumn) -> None:
    where = f'column "{col.name}"'
    cats = col.categories
    if len(cats) > MAX_CATEGORIES:
        _fail(src, f"{where}: {len(cats)} categories; at most {MAX_CATEGORIES} are supported")
    all_str = all(isinstance(c, str) for c in cats)
    all_int = all(isinstance(c, int) and not isinstance(c, bool) for c in cats)
    if not (all_str or all_int):
        _fail(src, f"{where}: categories must be all strings or all integers")
    if len(set(cats)) != len(cats):
        _fail(src, f"{where}: a category is listed twice")
    if all_str and any(not c.strip() for c in cats):  # type: ignore[union-attr]
        _fail(src, f"{where}: a category is an empty string; use nullable = true for missing values")


def _column_to_dict(col: Column) -> dict[str, Any]:
    if isinstance(col, NumericColumn):
        num = (lambda v: int(v)) if col.integer else (lambda v: v)
        out = {"name": col.name, "type": "numeric", "lower": num(col.lower), "upper": num(col.upper),
               "integer": col.integer, "transform": col.transform}
        if col.decimals is not None:
            out["decimals"] = col.decimals
        return out | {"nullable": col.nullable, "role": col.role}
    if isinstance(col, CategoricalColumn):
        return {"name": col.name, "type": "categorical", "categories": list(col.categories),
                "nullable": col.nullable, "role": col.role}
    return {"name": col.name, "role": col.role}


def _toml_value(value: Any) -> str:
    """Render a scalar or flat list as TOML (strings as basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r"))
        return '"' + "".join(_toml_char(ch) for ch in escaped) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")


def _toml_char(ch: str) -> str:
    """A character as TOML writes it: printable as is, others as \\u/\\U escapes."""
    code = ord(ch)
    if ch.isprintable():
        return ch
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError("a lone surrogate cannot be written to TOML")
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
