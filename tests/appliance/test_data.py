"""Tests of appliance/data.py: one test per rule, the real files, and no cell value in any error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hgan.appliance import data
from hgan.appliance.data import load_table, validate_frame
from hgan.release.errors import InvalidInput
from hgan.release.schema import CategoricalColumn, IgnoredColumn, NumericColumn, Schema

DATA = Path("/work/shared/data")

SCHEMA = Schema(columns=(
    IgnoredColumn("pid", role="id"),
    NumericColumn("age", 20, 100, integer=True),
    NumericColumn("kappa", 0, 25, nullable=True),
    CategoricalColumn("sex", ("F", "M")),
    CategoricalColumn("grade", (2, 3), nullable=True),
    IgnoredColumn("notes", role="drop"),
    CategoricalColumn("death", (0, 1), role="target"),
))
HEADER = ["pid", "age", "kappa", "sex", "grade", "notes", "death"]
ROWS = [
    ["1", "54", "1.2", "F", "2", "free text", "0"],
    ["2", "61", "", "M", "3", "more", "1"],
    ["3", " 70 ", "NA", "F", "", "x", "0"],
    ["4", "45", "3.5", " M", "2.0", "y", "1"],
]


def write(tmp_path: Path, rows: list[list[str]] = ROWS, header: list[str] = HEADER, name: str = "t.csv") -> Path:
    path = tmp_path / name
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def with_cells(**cells: dict[int, str]) -> list[list[str]]:
    """ROWS with cells replaced: with_cells(age={0: "x"}) sets row 0 of column age."""
    rows = [list(r) for r in ROWS]
    for column, changes in cells.items():
        for i, value in changes.items():
            rows[i][HEADER.index(column)] = value
    return rows


def refused(path: Path, code: str, schema: Schema = SCHEMA, *secrets: str) -> InvalidInput:
    """Load must fail with ``code``, name the file, carry a hint and hold none of ``secrets``."""
    with pytest.raises(InvalidInput) as info:
        load_table(path, schema)
    err = info.value
    assert err.code == code, str(err)
    assert str(path) in err.message
    assert err.hint
    for secret in secrets:
        assert secret not in str(err) and secret not in err.hint
    return err


# -- a valid table -----------------------------------------------------------------

def test_valid_table_has_modelled_columns_only(tmp_path: Path) -> None:
    frame = load_table(write(tmp_path), SCHEMA)
    assert list(frame.columns) == ["age", "kappa", "sex", "grade", "death"]
    assert "pid" not in frame and "notes" not in frame
    assert isinstance(frame.index, pd.RangeIndex) and list(frame.index) == [0, 1, 2, 3]


def test_canonical_dtypes(tmp_path: Path) -> None:
    frame = load_table(write(tmp_path), SCHEMA)
    assert frame["age"].dtype == np.float64 and frame["kappa"].dtype == np.float64
    assert frame["age"].tolist() == [54.0, 61.0, 70.0, 45.0]
    assert frame["kappa"].iloc[0] == 1.2 and frame["kappa"].isna().tolist() == [False, True, True, False]
    for name, cats in (("sex", ["F", "M"]), ("grade", [2, 3]), ("death", [0, 1])):
        assert isinstance(frame[name].dtype, pd.CategoricalDtype)
        assert list(frame[name].cat.categories) == cats
    assert frame["sex"].tolist() == ["F", "M", "F", "M"]
    assert frame["death"].cat.codes.tolist() == [0, 1, 0, 1]
    assert frame["grade"].cat.codes.tolist() == [0, 1, -1, 0]


def test_string_categories_keep_schema_order(tmp_path: Path) -> None:
    schema = Schema(columns=(CategoricalColumn("sex", ("M", "F")),))
    frame = load_table(write(tmp_path, [["F"], ["M"]], ["sex"]), schema)
    assert list(frame["sex"].cat.categories) == ["M", "F"]
    assert frame["sex"].cat.codes.tolist() == [1, 0]


def test_integer_category_matches_2_and_2_point_0(tmp_path: Path) -> None:
    frame = load_table(write(tmp_path, with_cells(grade={0: "2", 1: "2.0", 2: " 3 ", 3: "3.00"})), SCHEMA)
    assert frame["grade"].tolist() == [2, 2, 3, 3]


def test_text_is_read_verbatim(tmp_path: Path) -> None:
    """The reader must not infer types: "007" stays a string category, not 7."""
    schema = Schema(columns=(CategoricalColumn("code", ("007", "1e3")),))
    frame = load_table(write(tmp_path, [["007"], ["1e3"]], ["code"]), schema)
    assert frame["code"].tolist() == ["007", "1e3"]


def test_column_order_may_differ(tmp_path: Path) -> None:
    order = [6, 0, 3, 1, 5, 2, 4]
    path = write(tmp_path, [[r[i] for i in order] for r in ROWS], [HEADER[i] for i in order])
    expected = load_table(write(tmp_path, name="u.csv"), SCHEMA)
    pd.testing.assert_frame_equal(load_table(path, SCHEMA), expected)


def test_na_values_come_from_the_schema(tmp_path: Path) -> None:
    schema = Schema(columns=(NumericColumn("x", 0, 10, nullable=True),), na_values=("?",))
    frame = load_table(write(tmp_path, [["?"], [" ? "], ["1"]], ["x"]), schema)
    assert frame["x"].isna().tolist() == [True, True, False]
    err = refused(write(tmp_path, [["NA"], ["1"]], ["x"]), "data.type", schema)
    assert "1 row is not numbers" in err.message


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffsex\nF\nM\n".encode())
    schema = Schema(columns=(CategoricalColumn("sex", ("F", "M")),))
    assert load_table(path, schema)["sex"].tolist() == ["F", "M"]


def test_validate_frame_accepts_an_object_frame() -> None:
    frame = pd.DataFrame({"death": ["0", "1", "1"], "x": ["1.5", None, "2"]}, dtype=object)
    schema = Schema(columns=(NumericColumn("x", 0, 3, nullable=True), CategoricalColumn("death", (0, 1), role="target")))
    out = validate_frame(frame, schema, source="mem")
    assert out["x"].isna().tolist() == [False, True, False]
    assert list(out.columns) == ["x", "death"]


# -- unreadable and empty files --------------------------------------------------------

def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    refused(tmp_path / "absent.csv", "data.unreadable")


def test_non_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("sex\nF\nZZSECRET\xe9\n".encode("latin-1"))
    refused(path, "data.unreadable", SCHEMA, "ZZSECRET")


def test_row_longer_than_header_is_unreadable(tmp_path: Path) -> None:
    rows = with_cells(notes={2: "ZZSECRET,extra"})
    refused(write(tmp_path, rows), "data.unreadable", SCHEMA, "ZZSECRET", "extra")


def test_row_shorter_than_header_is_unreadable(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1] = ["2", "61", "ZZSECRET"]
    refused(write(tmp_path, rows), "data.unreadable", SCHEMA, "ZZSECRET")


def test_binary_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(bytes(range(256)) * 4)
    refused(path, "data.unreadable")


def test_unbalanced_quote_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('sex,death\n"F,ZZSECRET\nM,1\n', encoding="utf-8")
    refused(path, "data.unreadable", SCHEMA, "ZZSECRET")


def test_oversized_file_is_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path)
    monkeypatch.setattr(data, "MAX_DATA_BYTES", path.stat().st_size - 1)
    assert "bytes" in refused(path, "data.unreadable").message


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n"])
def test_empty_file_is_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    refused(path, "data.empty")


def test_header_only_is_empty(tmp_path: Path) -> None:
    refused(write(tmp_path, []), "data.empty")


# -- rule 2: columns ----------------------------------------------------------------

def test_extra_and_absent_columns_are_listed(tmp_path: Path) -> None:
    header = ["pid", "age", "kappa", "sex", "grade", "notes", "outcome"]
    err = refused(write(tmp_path, header=header), "data.columns")
    assert '1 column(s) are in the data but not in the schema: "outcome"' in err.message
    assert '1 column(s) are in the schema but not in the data: "death"' in err.message


def test_duplicated_header_name_is_refused(tmp_path: Path) -> None:
    header = ["pid", "age", "kappa", "sex", "grade", "age", "death"]
    err = refused(write(tmp_path, header=header), "data.columns")
    assert 'more than once in the header: "age"' in err.message
    assert '"notes"' in err.message


def test_long_column_lists_are_cut(tmp_path: Path) -> None:
    header = HEADER + [f"extra{i}" for i in range(30)]
    rows = [r + ["0"] * 30 for r in ROWS]
    err = refused(write(tmp_path, rows, header), "data.columns")
    assert "30 column(s) are in the data but not in the schema" in err.message
    assert '"extra19" and 10 more' in err.message and "extra20" not in err.message


# -- rule 3: numeric columns ---------------------------------------------------------------

def test_non_numeric_text_is_a_type_error(tmp_path: Path) -> None:
    err = refused(write(tmp_path, with_cells(kappa={0: "ZZSECRET", 3: "1;5x"})), "data.type", SCHEMA, "ZZSECRET")
    assert 'column "kappa": 2 rows are not numbers' in err.message


def test_infinity_is_a_type_error(tmp_path: Path) -> None:
    err = refused(write(tmp_path, with_cells(kappa={1: "inf", 2: "-inf", 3: "Infinity"})), "data.type")
    assert 'column "kappa": 3 rows are infinite' in err.message


def test_fraction_in_integer_column_is_a_type_error(tmp_path: Path) -> None:
    err = refused(write(tmp_path, with_cells(age={1: "54.321987"})), "data.type", SCHEMA, "54.321987", "54.3")
    assert 'column "age": 1 row is not whole numbers in an integer column' in err.message


def test_out_of_bounds_counts_below_and_above(tmp_path: Path) -> None:
    rows = with_cells(age={0: "987654", 1: "-987654", 2: "101"}, kappa={0: "987654.321"})
    err = refused(write(tmp_path, rows), "data.bounds", SCHEMA, "987654", "101")
    assert 'column "age": 3 rows are outside [20, 100] (1 below, 2 above)' in err.message
    assert 'column "kappa": 1 row is outside [0, 25] (0 below, 1 above)' in err.message


def test_bounds_are_inclusive(tmp_path: Path) -> None:
    frame = load_table(write(tmp_path, with_cells(age={0: "20", 1: "100"}, kappa={0: "0", 3: "25"})), SCHEMA)
    assert frame["age"].tolist()[:2] == [20.0, 100.0]


# -- rule 4: categories ---------------------------------------------------------------------

def test_unknown_string_category(tmp_path: Path) -> None:
    rows = with_cells(sex={0: "ZZSECRET", 1: "ZZSECRET", 2: "f"})
    err = refused(write(tmp_path, rows), "data.category", SCHEMA, "ZZSECRET")
    assert 'column "sex": 3 rows are not in the category list (2 distinct unknown value(s))' in err.message
    assert "'f'" not in err.message and '"f"' not in err.message


def test_unknown_integer_category(tmp_path: Path) -> None:
    rows = with_cells(grade={0: "987654", 1: "2.5", 3: "two"})
    err = refused(write(tmp_path, rows), "data.category", SCHEMA, "987654", "2.5", "two")
    assert 'column "grade": 3 rows are not in the category list (3 distinct unknown value(s))' in err.message


# -- rule 5: missing values -------------------------------------------------------------------

def test_missing_in_non_nullable_column(tmp_path: Path) -> None:
    err = refused(write(tmp_path, with_cells(age={0: "", 2: "NA"}, sex={1: " "})), "data.missing")
    assert 'column "age": 2 rows are missing but the column is not nullable' in err.message
    assert 'column "sex": 1 row is missing' in err.message
    assert "nullable = true" in err.hint


# -- rule 6: every target class has rows -------------------------------------------------------

def test_target_class_without_rows(tmp_path: Path) -> None:
    err = refused(write(tmp_path, with_cells(death={1: "0", 3: "0"})), "data.class_empty")
    assert 'column "death": target class(es) with no rows: 1' in err.message


# -- rule 7: all problems at once ---------------------------------------------------------------

def test_all_problems_are_reported_with_the_first_code(tmp_path: Path) -> None:
    rows = with_cells(age={0: "ZZSECRET"}, kappa={1: "987654.321"}, sex={2: "X"}, death={0: ""})
    err = refused(write(tmp_path, rows), "data.type", SCHEMA, "ZZSECRET", "987654.321")
    assert "(4 problem(s))" in err.message
    for line in ('column "age": 1 row is not numbers [data.type]',
                 'column "kappa": 1 row is outside [0, 25] (0 below, 1 above) [data.bounds]',
                 'column "sex": 1 row is not in the category list (1 distinct unknown value(s)) [data.category]',
                 'column "death": 1 row is missing but the column is not nullable [data.missing]'):
        assert line in err.message


def test_long_problem_lists_are_cut() -> None:
    n = 30
    schema = Schema(columns=tuple(NumericColumn(f"x{i}", 0, 1) for i in range(n)))
    frame = pd.DataFrame({f"x{i}": ["5"] for i in range(n)})
    with pytest.raises(InvalidInput) as info:
        validate_frame(frame, schema, source="mem")
    lines = info.value.message.splitlines()
    assert len(lines) == 1 + data.MAX_LISTED + 1
    assert lines[-1].strip() == f"and {n - data.MAX_LISTED} more"


# -- the real files ---------------------------------------------------------------------------

FLCHAIN = Schema(columns=(
    NumericColumn("age", 50, 101, integer=True),
    CategoricalColumn("sex", ("F", "M")),
    NumericColumn("sample.yr", 1995, 2003, integer=True),
    NumericColumn("kappa", 0.01, 20.5, transform="log"),
    NumericColumn("lambda", 0.04, 26.6, transform="log"),
    CategoricalColumn("flc.grp", tuple(range(1, 11))),
    NumericColumn("creatinine", 0.4, 10.8, nullable=True),
    CategoricalColumn("mgus", (0, 1)),
    IgnoredColumn("futime"),
    CategoricalColumn("death", (0, 1), role="target"),
    IgnoredColumn("chapter"),
))


def test_flchain_loads_with_a_correct_schema() -> None:
    frame = load_table(DATA / "flchain.csv", FLCHAIN)
    raw = pd.read_csv(DATA / "flchain.csv")
    assert frame.shape == (7874, 9)
    assert "futime" not in frame and "chapter" not in frame
    assert int(frame["creatinine"].isna().sum()) == 1350
    assert frame["death"].cat.codes.tolist() == raw["death"].tolist()
    assert frame["sex"].tolist() == raw["sex"].tolist()
    np.testing.assert_array_equal(frame["kappa"].to_numpy(), raw["kappa"].to_numpy())


def _replace(schema: Schema, **columns: object) -> Schema:
    return Schema(columns=tuple(columns.get(c.name.replace(".", "_"), c) for c in schema.columns))


def test_flchain_with_a_wrong_schema() -> None:
    raw = pd.read_csv(DATA / "flchain.csv")
    wrong = _replace(FLCHAIN, creatinine=NumericColumn("creatinine", 0.4, 10.8),
                     age=NumericColumn("age", 50, 90, integer=True),
                     sex=CategoricalColumn("sex", ("F",)))
    err = refused(DATA / "flchain.csv", "data.bounds", wrong)
    assert f'column "age": {int((raw["age"] > 90).sum())} rows are outside [50, 90] (0 below, ' in err.message
    assert f'column "sex": {int((raw["sex"] == "M").sum())} rows are not in the category list' in err.message
    assert 'column "creatinine": 1350 rows are missing' in err.message


def test_flchain_lacks_a_declared_column() -> None:
    wrong = Schema(columns=FLCHAIN.columns + (NumericColumn("bmi", 10, 60),))
    assert '"bmi"' in refused(DATA / "flchain.csv", "data.columns", wrong).message


def test_rotterdam_against_the_flchain_schema() -> None:
    err = refused(DATA / "rotterdam.csv", "data.columns", FLCHAIN)
    assert '"pid"' in err.message and '"kappa"' in err.message


# -- speed -------------------------------------------------------------------------------------

def test_10000_by_60_validates_every_cell() -> None:
    """A table of the largest expected shape (the speed of this is a benchmark's, not a test's)."""
    rng = np.random.default_rng(0)
    cols, cells = [], {}
    for i in range(60):
        if i % 2:
            cols.append(NumericColumn(f"n{i}", 0, 100, nullable=True))
            cells[f"n{i}"] = rng.uniform(0, 100, 10_000).round(3).astype(str)
        else:
            cols.append(CategoricalColumn(f"c{i}", ("a", "b", "c")))
            cells[f"c{i}"] = rng.choice(["a", "b", "c"], 10_000)
    frame, schema = pd.DataFrame(cells).astype(str), Schema(columns=tuple(cols))
    out = validate_frame(frame, schema, source="mem")
    assert out.shape == (10_000, 60)
    np.testing.assert_array_equal(out["n1"].to_numpy(dtype=float), frame["n1"].astype(float).to_numpy())
    assert list(out["c0"].cat.categories) == ["a", "b", "c"] and (out["c0"].astype(str) == frame["c0"]).all()


# -- property: bad cells give InvalidInput and never leak -------------------------------------

PROP = Schema(columns=(
    NumericColumn("n", -5, 5, integer=True),
    NumericColumn("x", 0, 1, nullable=True),
    CategoricalColumn("s", ("a", "b")),
    CategoricalColumn("k", (1, 2, 3), nullable=True),
    CategoricalColumn("y", (0, 1), role="target"),
))
_VALID = {
    "n": st.integers(-5, 5).map(str),
    "x": st.one_of(st.floats(0, 1).map(repr), st.just("NA"), st.just("")),
    "s": st.sampled_from(["a", "b", " a "]),
    "k": st.sampled_from(["1", "2.0", " 3", "", "NA"]),
    "y": st.sampled_from(["0", "1"]),
}


def _secrets(column: str, tag: int) -> list[str]:
    """Bad cell texts for ``column``, each with a distinctive tag; "NA" for a non-nullable one."""
    bad = [f"ZZSECRET{tag}", f"{tag}.5ZZ"]
    if column in ("n", "x"):
        bad += [f"98765{tag}.125", f"-98765{tag}.25"]
    if column == "n":
        bad += [f"3.{tag}7"]
    if column in ("k", "y"):
        bad += [f"98765{tag}", f"1.{tag}7"]
    return bad


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[pd.DataFrame, list[str]]:
    n = draw(st.integers(2, 6))
    cells = {c: [draw(_VALID[c]) for _ in range(n)] for c in _VALID}
    cells["y"][:2] = ["0", "1"]
    secrets = []
    for _ in range(draw(st.integers(1, 3))):
        column = draw(st.sampled_from(list(_VALID)))
        row = draw(st.integers(0, n - 1))
        tag = draw(st.integers(1000, 9999))
        value = draw(st.sampled_from(_secrets(column, tag) + (["NA"] if column in ("n", "s", "y") else [])))
        cells[column][row] = value
        if value != "NA":
            secrets.append(value)
    return pd.DataFrame(cells), secrets


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_bad_cells_raise_invalid_input_without_their_value(case: tuple[pd.DataFrame, list[str]]) -> None:
    frame, secrets = case
    with pytest.raises(InvalidInput) as info:
        validate_frame(frame, PROP, source="mem.csv")
    err = info.value
    assert err.code in {"data.type", "data.bounds", "data.category", "data.missing", "data.class_empty"}
    assert "mem.csv" in err.message
    for secret in secrets:
        assert secret not in str(err)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.fixed_dictionaries(
    {c: st.lists(s, min_size=n, max_size=n) for c, s in _VALID.items()})))
def test_valid_cells_always_load(cells: dict[str, list[str]]) -> None:
    cells["y"][:2] = ["0", "1"]
    out = validate_frame(pd.DataFrame(cells), PROP, source="mem.csv")
    assert out["n"].tolist() == [float(v) for v in cells["n"]]
    assert out["k"].isna().tolist() == [v.strip() in ("", "NA") for v in cells["k"]]
