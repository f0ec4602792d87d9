"""Tests of appliance/draft.py: inferred types and roles, rounded bounds, the rendered draft."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from hgan.appliance.data import load_table
from hgan.appliance.draft import draft_schema, render_draft, rounded_bounds
from hgan.release.errors import InvalidInput
from hgan.release.schema import CategoricalColumn, IgnoredColumn, NumericColumn, Schema

DATA = Path("/work/shared/data")


@pytest.fixture(scope="module")
def flchain() -> Schema:
    return draft_schema(DATA / "flchain.csv", target="death", drop_columns=("futime", "chapter"))


@pytest.fixture(scope="module")
def rotterdam() -> Schema:
    return draft_schema(DATA / "rotterdam.csv", target="death", id_columns=("pid",),
                        drop_columns=("rtime", "recur", "dtime"))


def numeric(schema: Schema, name: str) -> NumericColumn:
    col = schema.column(name)
    assert isinstance(col, NumericColumn), col
    return col


def categorical(schema: Schema, name: str) -> CategoricalColumn:
    col = schema.column(name)
    assert isinstance(col, CategoricalColumn), col
    return col


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    return path


# -- the real files --------------------------------------------------------------------------

def test_flchain_types_and_roles(flchain: Schema) -> None:
    assert flchain.draft is True
    assert flchain.names == pd.read_csv(DATA / "flchain.csv", nrows=0).columns.tolist()
    assert categorical(flchain, "sex") == CategoricalColumn("sex", ("F", "M"))
    assert categorical(flchain, "mgus") == CategoricalColumn("mgus", (0, 1))
    assert categorical(flchain, "flc.grp").categories == tuple(range(1, 11))
    assert flchain.target == CategoricalColumn("death", (0, 1), role="target")
    assert flchain.column("futime") == IgnoredColumn("futime", role="drop")
    assert flchain.column("chapter") == IgnoredColumn("chapter", role="drop")
    creat = numeric(flchain, "creatinine")
    assert creat.nullable and not creat.integer
    for name in ("age", "sample.yr"):
        assert numeric(flchain, name).integer and not numeric(flchain, name).nullable
    assert [c.nullable for c in flchain.modelled].count(True) == 1


def test_rotterdam_types_and_roles(rotterdam: Schema) -> None:
    assert rotterdam.column("pid") == IgnoredColumn("pid", role="id")
    assert categorical(rotterdam, "size").categories == ("20-50", "<=20", ">50")
    assert categorical(rotterdam, "grade").categories == (2, 3)
    for flag in ("meno", "hormon", "chemo"):
        assert categorical(rotterdam, flag).categories == (0, 1)
    for name in ("year", "age", "nodes", "pgr", "er"):
        assert numeric(rotterdam, name).integer
    assert [c.name for c in rotterdam.modelled] == ["year", "age", "meno", "size", "grade", "nodes",
                                                      "pgr", "er", "hormon", "chemo", "death"]


def test_a_single_name_may_be_given_as_a_string() -> None:
    schema = draft_schema(DATA / "rotterdam.csv", id_columns="pid", drop_columns="rtime")
    assert schema.column("pid").role == "id" and schema.column("rtime").role == "drop"


def test_identifier_like_integer_column_is_dropped_without_id_columns() -> None:
    schema = draft_schema(DATA / "rotterdam.csv")
    assert schema.column("pid") == IgnoredColumn("pid", role="drop")
    assert schema.target is None
    assert categorical(schema, "death").role == "feature"


@pytest.mark.parametrize("file,name", [("flchain.csv", c) for c in ("age", "sample.yr", "kappa", "lambda", "creatinine")]
                         + [("rotterdam.csv", c) for c in ("year", "age", "nodes", "pgr", "er")])
def test_bounds_contain_the_data_and_are_rounded(file: str, name: str, flchain: Schema, rotterdam: Schema) -> None:
    schema = flchain if file == "flchain.csv" else rotterdam
    col = numeric(schema, name)
    values = pd.read_csv(DATA / file)[name].dropna()
    lo, hi = float(values.min()), float(values.max())
    assert col.lower <= lo and hi <= col.upper
    step = 10 ** math.floor(math.log10(hi - lo)) / 2
    step = max(step, 5.0) if col.integer else step
    for bound in (col.lower, col.upper):
        assert abs(bound / step - round(bound / step)) < 1e-9, (bound, step)
    assert col.upper - hi < step and lo - col.lower < step


def test_known_bounds(flchain: Schema, rotterdam: Schema) -> None:
    expected = {("flchain", "age"): (50, 105), ("flchain", "sample.yr"): (1995, 2005),
                ("flchain", "kappa"): (0, 25), ("flchain", "lambda"): (0, 30),
                ("flchain", "creatinine"): (0, 15), ("rotterdam", "age"): (20, 90),
                ("rotterdam", "year"): (1975, 1995), ("rotterdam", "pgr"): (0, 5500),
                ("rotterdam", "er"): (0, 3500), ("rotterdam", "nodes"): (0, 35)}
    for (file, name), (lower, upper) in expected.items():
        col = numeric(flchain if file == "flchain" else rotterdam, name)
        assert (col.lower, col.upper) == (lower, upper), name


def test_extremes_off_the_grid_are_not_copied(flchain: Schema) -> None:
    raw = pd.read_csv(DATA / "flchain.csv")
    for name in ("kappa", "lambda", "creatinine", "sample.yr"):
        col = numeric(flchain, name)
        assert col.lower != raw[name].min() or name == "sample.yr"
        assert col.upper != raw[name].max()


def test_heavy_tails_get_a_log_transform(flchain: Schema, rotterdam: Schema) -> None:
    assert numeric(rotterdam, "pgr").transform == "log"
    assert numeric(rotterdam, "er").transform == "log"
    for schema, name in ((rotterdam, "age"), (rotterdam, "nodes"), (flchain, "kappa"), (flchain, "creatinine")):
        assert numeric(schema, name).transform == "none", name


def test_draft_loads_its_own_data_once_reviewed(flchain: Schema) -> None:
    """The draft's bounds contain the data, so the table validates against it."""
    frame = load_table(DATA / "flchain.csv", flchain)
    assert frame.shape == (7874, 9)


# -- rendering -------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["flchain", "rotterdam"])
def test_render_draft_loads_back_equal(which: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    schema = request.getfixturevalue(which)
    text = render_draft(schema, source_name=f"{which}.csv")
    path = tmp_path / "draft.toml"
    path.write_text(text, encoding="utf-8")
    assert Schema.load(path) == schema


def test_render_draft_header_warns(flchain: Schema) -> None:
    text = render_draft(flchain, source_name="flchain.csv")
    head = text.split("format =")[0]
    assert all(line.startswith("#") for line in head.splitlines())
    for phrase in ("DRAFT", "FROM THE DATA", "flchain.csv", "PUBLIC knowledge", "draft = true",
                   "Training refuses"):
        assert phrase in head
    assert "\ndraft = true\n" in text
    assert text.count("\n# ") >= len(flchain.columns)


def test_render_draft_survives_hostile_names(tmp_path: Path) -> None:
    path = write(tmp_path, '"a\nb","x"" = 1 #",c\\d\n1,F,0\n2,M,1\n3,F,0\n')
    schema = draft_schema(path, target="c\\d")
    text = render_draft(schema, source_name="evil\nname = 1\n[[columns]]")
    out = tmp_path / "d.toml"
    out.write_text(text, encoding="utf-8")
    loaded = Schema.load(out)
    assert loaded == schema
    assert loaded.names == ["a\nb", 'x" = 1 #', "c\\d"]


def test_removing_the_draft_line_gives_a_reviewed_schema(flchain: Schema, tmp_path: Path) -> None:
    text = render_draft(flchain, source_name="flchain.csv").replace("\ndraft = true\n", "\n")
    path = tmp_path / "reviewed.toml"
    path.write_text(text, encoding="utf-8")
    assert Schema.load(path).draft is False


# -- inference rules on small files ---------------------------------------------------------

def test_small_integer_codes_are_categorical_large_ones_numeric(tmp_path: Path) -> None:
    rows = "\n".join(f"{i % 2},{2000 + i % 3},{i % 12},{-(i % 3)}" for i in range(40))
    schema = draft_schema(write(tmp_path, "flag,year,many,neg\n" + rows + "\n"))
    assert categorical(schema, "flag").categories == (0, 1)
    assert numeric(schema, "year") == NumericColumn("year", 2000, 2005, integer=True)
    assert numeric(schema, "many") == NumericColumn("many", 0, 15, integer=True)
    assert numeric(schema, "neg").lower == -5


def test_text_categories_are_sorted_stripped(tmp_path: Path) -> None:
    schema = draft_schema(write(tmp_path, "s\n b\na\nb \nc\n"))
    assert categorical(schema, "s").categories == ("a", "b", "c")


def test_many_distinct_texts_look_like_free_text(tmp_path: Path) -> None:
    rows = "\n".join(f"note {i},{i % 2}" for i in range(60))
    schema = draft_schema(write(tmp_path, "note,y\n" + rows + "\n"))
    assert schema.column("note") == IgnoredColumn("note", role="drop")


def test_empty_column_is_dropped_and_missing_makes_nullable(tmp_path: Path) -> None:
    schema = draft_schema(write(tmp_path, "e,x,s\nNA,1.5,a\n,NA,\n,2.5,b\n"))
    assert schema.column("e") == IgnoredColumn("e", role="drop")
    assert numeric(schema, "x").nullable
    assert categorical(schema, "s").nullable


def test_text_target_gets_string_classes(tmp_path: Path) -> None:
    schema = draft_schema(write(tmp_path, "x,y\n1,yes\n2,no\n3,yes\n"), target="y")
    assert schema.target == CategoricalColumn("y", ("no", "yes"), role="target")


def test_unknown_target_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,y\n1,0\n2,1\n"), target="outcome")
    assert info.value.code == "schema.invalid"
    assert '"outcome"' in info.value.message
    assert '"x"' not in info.value.message


@pytest.mark.parametrize("kwargs", [{"id_columns": ["nope"]}, {"drop_columns": ["nope"]},
                                    {"target": "y", "drop_columns": ["y"]}])
def test_bad_role_arguments_are_invalid(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,y\n1,0\n2,1\n"), **kwargs)
    assert info.value.code == "schema.invalid"


def test_missing_target_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,y\n1,0\n2,NA\n3,1\n4,\n"), target="y")
    assert info.value.code == "data.missing"
    assert '"y": 2 row(s)' in info.value.message


def test_single_class_target_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,y\n1,0\n2,0\n"), target="y")
    assert info.value.code == "schema.invalid"


def test_header_only_and_duplicate_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,y\n"))
    assert info.value.code == "data.empty"
    with pytest.raises(InvalidInput) as info:
        draft_schema(write(tmp_path, "x,x\n1,2\n"))
    assert info.value.code == "data.columns"


@pytest.mark.parametrize("lo,hi,integer,expected", [
    (0.01, 20.5, False, (0.0, 25.0)),
    (0.15, 0.3, False, (0.1, 0.3)),
    (-3.7, -1.2, False, (-4.0, -1.0)),
    (1995, 2003, True, (1995.0, 2005.0)),
    (24, 90, True, (20.0, 90.0)),
    (0, 5004, True, (0.0, 5500.0)),
    (5, 5, False, (5.0, 5.5)),
])
def test_rounded_bounds(lo: float, hi: float, integer: bool, expected: tuple[float, float]) -> None:
    assert rounded_bounds(lo, hi, integer=integer) == expected


def test_decimals_follow_the_written_precision(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,d\n1.5,2.125,3e-4,7\n2.25,1.0,1e-3,8\n" + "3.0,4.5,2e-3,9\n" * 5)
    schema = draft_schema(path)
    assert schema.column("a").decimals == 2
    assert schema.column("b").decimals == 3
    assert schema.column("c").decimals is None      # exponent notation: no rounding proposed
    assert getattr(schema.column("d"), "decimals", None) is None  # integer-coded
