"""Load a CSV table and validate it against its schema.

Rules (invariant 2 and 6 of DESIGN.md):
1. Every cell is read as text (UTF-8, comma-separated, one header row, every
   row as long as the header); a cell is missing when its stripped text is one
   of the schema's ``na_values``. Files over ``MAX_DATA_BYTES`` are refused.
2. The header names exactly the schema's columns, each once, in any order.
3. A numeric column holds finite numbers, whole numbers if ``integer``, all
   within the schema's ``[lower, upper]``.
4. A categorical column holds only listed categories: string categories match
   the stripped text exactly; integer categories match any text that parses as
   that whole number (``"2"`` and ``"2.0"`` are category 2).
5. A column that is not ``nullable`` has no missing cells.
6. Every class of the target has at least one row.
7. Errors name the file, the column and the number of rows; never a cell
   value. All problems are reported at once, in one ``InvalidInput`` whose
   code is that of the first problem.

The result holds only the modelled columns (``schema.modelled``, in schema
order; id and drop columns are gone) with canonical dtypes: numeric columns are
float64 with NaN for missing, categorical columns are ``pandas.Categorical``
with exactly the schema's categories, in schema order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hgan.release.errors import InvalidInput
from hgan.release.schema import CategoricalColumn, NumericColumn, Schema

MAX_DATA_BYTES = 2 * 1024**3  # 2 GiB: far above a hospital table, far below a mistake
MAX_LISTED = 20  # problems (or column names) spelled out in one message

_HINTS = {
    "data.columns": "declare every data column in the schema (role = \"drop\" for columns that are not "
                    "modelled) and remove schema columns that the file lacks; names are compared exactly",
    "data.type": "fix those cells, or spell missing values as one of the schema's na_values",
    "data.bounds": "bounds are public limits every valid value meets: widen them from public "
                   "knowledge, or correct the rows",
    "data.category": "add the categories from the public code list to the schema, or correct the rows",
    "data.missing": "set nullable = true if a missing value is legitimate there, or fill the cells",
    "data.class_empty": "remove the class from the target's categories, or use data that has it",
}


@dataclass(frozen=True)
class _Problem:
    code: str
    column: str | None
    text: str

    def line(self) -> str:
        where = f'column "{self.column}": ' if self.column is not None else ""
        return f"{where}{self.text} [{self.code}]"


def load_table(path: str | Path, schema: Schema) -> pd.DataFrame:
    """Read the CSV at ``path`` and validate it against ``schema`` (rules 1-7)."""
    return validate_frame(read_csv_text(path), schema, source=str(path))


def read_csv_text(path: str | Path) -> pd.DataFrame:
    """Read a CSV as a frame of strings (rule 1); the header becomes the column names."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InvalidInput("data.unreadable", f"{p}: cannot read the data file ({exc.strerror})",
                           hint="check the path") from exc
    if size > MAX_DATA_BYTES:
        raise InvalidInput("data.unreadable",
                           f"{p}: the data file is {size} bytes; at most {MAX_DATA_BYTES} are read",
                           hint="check that this is the right file, or split the table")
    raw = _read_cells(p)
    header = [str(v) for v in raw.iloc[0]] if len(raw) else []
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    return frame


def _read_cells(p: Path) -> pd.DataFrame:
    """Every row of the file, header included, as strings. Library messages are not
    passed on: they can quote a row of the file."""
    unreadable = "data.unreadable"
    try:
        return pd.read_csv(p, header=None, dtype=str, keep_default_na=False, engine="pyarrow",
                           encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(unreadable, f"{p}: the data file is not UTF-8 text",
                           hint="export the table as UTF-8 CSV") from None
    except pd.errors.EmptyDataError:
        if _blank(p):
            raise InvalidInput("data.empty", f"{p}: the data file is empty",
                               hint="the file needs a header row and at least one data row") from None
        raise InvalidInput(unreadable, f"{p}: the data file is not a CSV table (unbalanced quotes?)",
                           hint="export the table as comma-separated values") from None
    except OSError as exc:
        raise InvalidInput(unreadable, f"{p}: cannot read the data file ({exc.strerror})",
                           hint="check the path and its permissions") from None
    except ValueError as exc:  # pandas' ParserError and pyarrow's ArrowInvalid among them
        raise InvalidInput(unreadable, f"{p}: the data file is not a well-formed CSV table "
                                       f"({type(exc).__name__}: rows of different lengths, "
                                       "broken quoting or a binary file)",
                           hint="export the table as comma-separated values, one header row, "
                                "every row as long as the header") from None


def _blank(p: Path) -> bool:
    with p.open("rb") as f:
        return not f.read(4096).strip(b" \t\r\n\xef\xbb\xbf")


def validate_frame(frame: pd.DataFrame, schema: Schema, *, source: str) -> pd.DataFrame:
    """Check a frame of strings against ``schema`` (rules 2-7); return the canonical frame."""
    if len(frame) == 0:
        raise InvalidInput("data.empty", f"{source}: the data has a header but no rows",
                           hint="the file needs at least one data row")
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    problems = _column_problems(list(frame.columns), schema)
    na = na_set(schema.na_values)
    out: dict[str, object] = {}
    for col in schema.modelled:
        if col.name not in frame.columns:
            continue
        text, missing = cell_text(frame[col.name], na)
        if not col.nullable and missing.any():
            problems.append(_Problem("data.missing", col.name,
                                     f"{_rows(int(missing.sum()))} missing but the column is not nullable"))
        if isinstance(col, NumericColumn):
            out[col.name], found = _numeric(col, text, missing)
        else:
            out[col.name], found = _categorical(col, text, missing, target=col.role == "target")
        problems.extend(found)
    if problems:
        raise _error(source, problems)
    return pd.DataFrame({c.name: out[c.name] for c in schema.modelled})


def _column_problems(names: list[str], schema: Schema) -> list[_Problem]:
    """Rule 2: the header names exactly the schema's columns, each once."""
    declared, seen = set(schema.names), set(names)
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    extra = [n for n in names if n not in declared]
    absent = [n for n in schema.names if n not in seen]
    out = []
    for label, group in (("appear more than once in the header", twice),
                         ("are in the data but not in the schema", extra),
                         ("are in the schema but not in the data", absent)):
        if group:
            out.append(_Problem("data.columns", None, f"{len(group)} column(s) {label}: {_names(group)}"))
    return out


def _names(names: list[str]) -> str:
    shown = ", ".join(f'"{n}"' for n in names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def na_set(na_values: tuple[str, ...] | list[str]) -> frozenset[str]:
    """The stripped spellings of a missing value."""
    return frozenset(v.strip() for v in na_values)


def cell_text(series: pd.Series, na: frozenset[str]) -> tuple[pd.Series, np.ndarray]:
    """Stripped text of a column and its missing mask (rule 1); ``na`` holds stripped spellings."""
    if isinstance(series, pd.DataFrame):  # a duplicated name; reported by _column_problems
        series = series.iloc[:, 0]
    text = series.astype(str).str.strip()
    missing = (text.isna() | text.isin(na)).to_numpy(dtype=bool)
    return text.reset_index(drop=True), missing


def parse_numbers(text: pd.Series) -> np.ndarray:
    """Each cell as a float64; NaN where the text is not a number."""
    return pd.to_numeric(text.to_numpy(dtype=object), errors="coerce").astype(np.float64)


def _numeric(col: NumericColumn, text: pd.Series, missing: np.ndarray) -> tuple[np.ndarray, list[_Problem]]:
    """Rule 3: finite, whole if integer, within bounds. Missing cells become NaN."""
    values = parse_numbers(text)
    values[missing] = np.nan
    problems = []
    not_number = ~missing & np.isnan(values)
    infinite = np.isinf(values)
    if not_number.any():
        problems.append(_Problem("data.type", col.name, f"{_rows(int(not_number.sum()))} not numbers"))
    if infinite.any():
        problems.append(_Problem("data.type", col.name, f"{_rows(int(infinite.sum()))} infinite"))
    finite = np.isfinite(values)
    if col.integer:
        fractional = finite & (values != np.floor(np.where(finite, values, 0.0)))
        if fractional.any():
            problems.append(_Problem("data.type", col.name,
                                     f"{_rows(int(fractional.sum()))} not whole numbers in an integer column"))
    below = int((finite & (values < col.lower)).sum())
    above = int((finite & (values > col.upper)).sum())
    if below or above:
        problems.append(_Problem("data.bounds", col.name,
                                 f"{_rows(below + above)} outside [{_num(col.lower)}, {_num(col.upper)}] "
                                 f"({below} below, {above} above)"))
    return values, problems


def _categorical(col: CategoricalColumn, text: pd.Series, missing: np.ndarray, *,
                 target: bool) -> tuple[pd.Categorical, list[_Problem]]:
    """Rules 4 and 6: known categories only; every target class present."""
    cats = list(col.categories)
    if isinstance(cats[0], str):
        codes = pd.Index(cats).get_indexer(text.to_numpy(dtype=object))
    else:
        values = parse_numbers(text)
        integral = np.isfinite(values) & (values == np.floor(np.where(np.isfinite(values), values, 0.0)))
        codes = pd.Index(np.asarray(cats, dtype=np.float64)).get_indexer(np.where(integral, values, np.nan))
    codes = np.where(missing, -1, codes)
    problems = []
    unknown = ~missing & (codes < 0)
    if unknown.any():
        distinct = text[unknown].nunique()
        problems.append(_Problem("data.category", col.name,
                                 f"{_rows(int(unknown.sum()))} not in the category list "
                                 f"({distinct} distinct unknown value(s))"))
    if target:
        counts = np.bincount(codes[codes >= 0], minlength=len(cats))
        empty = [c for c, n in zip(cats, counts) if n == 0]
        if empty:
            problems.append(_Problem("data.class_empty", col.name,
                                     f"target class(es) with no rows: {', '.join(map(repr, empty))}"))
    return pd.Categorical.from_codes(codes, categories=pd.Index(cats)), problems


def _rows(n: int) -> str:
    return f"{n} row{'s are' if n != 1 else ' is'}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _error(source: str, problems: list[_Problem]) -> InvalidInput:
    """One error for all problems: the first problem's code, at most MAX_LISTED lines."""
    lines = [p.line() for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"and {len(problems) - MAX_LISTED} more")
    head = f"{source}: the data does not match the schema ({len(problems)} problem(s))"
    hints = list(dict.fromkeys(_HINTS[p.code] for p in problems))
    return InvalidInput(problems[0].code, head + ":\n  " + "\n  ".join(lines), hint="; ".join(hints))
