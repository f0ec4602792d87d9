"""Tests of release/schema.py: one test per rule of its docstring, round trips, file errors."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hgan.release.errors import InvalidInput
from hgan.release.schema import (
    FORMAT, MAX_CATEGORIES, MAX_SCHEMA_BYTES, CategoricalColumn, IgnoredColumn, NumericColumn, Schema,
)


def valid() -> dict:
    return {
        "format": FORMAT,
        "na_values": ["", "NA"],
        "columns": [
            {"name": "pid", "role": "id"},
            {"name": "age", "type": "numeric", "lower": 24, "upper": 90, "integer": True,
             "transform": "none", "nullable": False, "role": "feature"},
            {"name": "pgr", "type": "numeric", "lower": 0, "upper": 5004.5, "transform": "log",
             "nullable": True},
            {"name": "size", "type": "categorical", "categories": ["<=20", "20-50", ">50"]},
            {"name": "rtime", "role": "drop", "type": "numeric", "lower": 0, "upper": 1},
            {"name": "death", "type": "categorical", "categories": [0, 1], "role": "target"},
        ],
    }


def invalid(raw: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        Schema.from_dict(raw, source="s.toml")
    assert info.value.code == "schema.invalid"
    assert info.value.exit_status == 2
    assert "s.toml" in info.value.message
    return info.value


def with_column(index: int, **changes: object) -> dict:
    raw = valid()
    col = raw["columns"][index]
    for key, value in changes.items():
        if value is None:
            col.pop(key, None)
        else:
            col[key] = value
    return raw


# -- round trips ------------------------------------------------------------

def test_valid_schema_is_parsed() -> None:
    s = Schema.from_dict(valid())
    assert s.names == ["pid", "age", "pgr", "size", "rtime", "death"]
    assert s.column("pid") == IgnoredColumn("pid", role="id")
    assert s.column("age") == NumericColumn("age", 24.0, 90.0, integer=True)
    assert s.column("pgr") == NumericColumn("pgr", 0.0, 5004.5, transform="log", nullable=True)
    assert s.column("size") == CategoricalColumn("size", ("<=20", "20-50", ">50"))
    assert s.target == CategoricalColumn("death", (0, 1), role="target")
    assert [c.name for c in s.features] == ["age", "pgr", "size"]
    assert [c.name for c in s.modelled] == ["age", "pgr", "size", "death"]
    assert s.na_values == ("", "NA") and s.draft is False


def test_dumps_load_round_trip(tmp_path: Path) -> None:
    s = Schema.from_dict(valid())
    path = tmp_path / "s.toml"
    path.write_text(s.dumps(), encoding="utf-8")
    loaded = Schema.load(path)
    assert loaded == s
    assert loaded.source == str(path)


def test_to_dict_from_dict_round_trip() -> None:
    s = Schema.from_dict(valid())
    assert Schema.from_dict(s.to_dict()) == s
    assert Schema.from_dict(copy.deepcopy(s.to_dict())).to_dict() == s.to_dict()


def test_integer_bounds_are_written_as_integers() -> None:
    text = Schema.from_dict(valid()).dumps()
    assert "lower = 24\n" in text and "upper = 90\n" in text
    assert "upper = 5004.5\n" in text


# -- rule 2: every column declared, with a role -------------------------------

def test_rule2_unknown_role_is_refused() -> None:
    assert '"role"' in invalid(with_column(1, role="label")).message


def test_rule2_column_declared_twice_is_refused() -> None:
    raw = valid()
    raw["columns"].append(dict(raw["columns"][1]))
    assert "declared twice" in invalid(raw).message


def test_rule2_column_needs_a_name() -> None:
    invalid(with_column(1, name=None))
    invalid(with_column(1, name="  "))
    invalid(with_column(1, name=3))


def test_rule2_no_columns_is_refused() -> None:
    raw = valid()
    raw["columns"] = []
    invalid(raw)
    del raw["columns"]
    invalid(raw)


def test_rule2_nothing_modelled_is_refused() -> None:
    raw = valid()
    raw["columns"] = [{"name": "pid", "role": "id"}, {"name": "x", "role": "drop"}]
    assert "nothing would be modelled" in invalid(raw).message


def test_rule2_unknown_type_is_refused() -> None:
    invalid(with_column(1, type="float"))
    invalid(with_column(1, type=None))


# -- rule 3: numeric columns --------------------------------------------------

@pytest.mark.parametrize("lower,upper", [(90, 24), (5, 5)])
def test_rule3_lower_must_be_below_upper(lower: float, upper: float) -> None:
    assert '"lower" must be below "upper"' in invalid(with_column(1, lower=lower, upper=upper)).message


@pytest.mark.parametrize("bound", [math.inf, -math.inf, math.nan, "0", True, [1]])
def test_rule3_bounds_must_be_finite_numbers(bound: object) -> None:
    invalid(with_column(1, lower=bound))
    invalid(with_column(1, upper=bound))


def test_rule3_bounds_are_required() -> None:
    invalid(with_column(1, lower=None))
    invalid(with_column(1, upper=None))


def test_rule3_integer_column_needs_integral_bounds() -> None:
    assert "integral bounds" in invalid(with_column(1, lower=24.5)).message
    invalid(with_column(1, integer="yes"))


def test_rule3_transform_must_be_known() -> None:
    invalid(with_column(2, transform="sqrt"))
    with pytest.raises(InvalidInput) as info:  # checked on construction too, not only when parsed
        Schema(columns=(NumericColumn("x", 0.0, 1.0, transform="exp"),))
    assert info.value.code == "schema.invalid"


# -- rule 4: categorical columns ----------------------------------------------

def test_rule4_categories_all_strings_or_all_integers() -> None:
    invalid(with_column(3, categories=["a", 1]))
    invalid(with_column(3, categories=[1.5, 2.5]))
    invalid(with_column(3, categories=[True, False]))


def test_rule4_no_repeated_category() -> None:
    assert "listed twice" in invalid(with_column(3, categories=["a", "b", "a"])).message


def test_rule4_categories_must_be_a_non_empty_list() -> None:
    invalid(with_column(3, categories=[]))
    invalid(with_column(3, categories="a"))
    invalid(with_column(3, categories=None))


def test_rule4_empty_string_category_is_refused() -> None:
    assert "empty string" in invalid(with_column(3, categories=["a", " "])).message


def test_rule4_too_many_categories_are_refused() -> None:
    invalid(with_column(3, categories=list(range(MAX_CATEGORIES + 1))))


# -- rule 5: the target --------------------------------------------------------

def test_rule5_at_most_one_target() -> None:
    assert "at most one" in invalid(with_column(3, role="target")).message


def test_rule5_target_must_be_categorical() -> None:
    raw = valid()
    raw["columns"] = [c for c in raw["columns"] if c["name"] != "death"]
    raw["columns"][1]["role"] = "target"
    assert "must be categorical" in invalid(raw).message


def test_rule5_target_must_not_be_nullable() -> None:
    invalid(with_column(5, nullable=True))


def test_rule5_target_needs_two_categories() -> None:
    invalid(with_column(5, categories=[1]))


def test_no_target_is_allowed() -> None:
    raw = valid()
    raw["columns"][5]["role"] = "feature"
    assert Schema.from_dict(raw).target is None


# -- rule 6: nullable -----------------------------------------------------------

def test_rule6_nullable_must_be_boolean() -> None:
    invalid(with_column(3, nullable="no"))
    invalid(with_column(1, nullable=0))


# -- rule 7: draft ---------------------------------------------------------------

def test_rule7_draft_flag_round_trips(tmp_path: Path) -> None:
    raw = valid() | {"draft": True}
    s = Schema.from_dict(raw)
    assert s.draft is True
    assert "draft = true" in s.dumps()
    path = tmp_path / "s.toml"
    path.write_text(s.dumps(), encoding="utf-8")
    assert Schema.load(path).draft is True
    assert "draft = true" not in Schema.from_dict(valid()).dumps()


def test_rule7_draft_must_be_boolean() -> None:
    invalid(valid() | {"draft": "yes"})


# -- the file ------------------------------------------------------------------

def test_format_must_match() -> None:
    invalid(valid() | {"format": "hgan-schema/2"})
    raw = valid()
    del raw["format"]
    invalid(raw)


def test_na_values_must_be_strings() -> None:
    invalid(valid() | {"na_values": ["", 1]})
    invalid(valid() | {"na_values": "NA"})


def test_unknown_field_is_refused() -> None:
    assert "'colums'" in invalid(valid() | {"colums": []}).message
    assert "'lowr'" in invalid(with_column(1, lowr=3)).message
    invalid(with_column(3, lower=0))  # numeric field on a categorical column


def test_schema_must_be_a_table() -> None:
    invalid([1, 2])
    raw = valid()
    raw["columns"][1] = "age"
    invalid(raw)


def unreadable(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        Schema.load(path)
    assert info.value.code == "schema.unreadable"
    assert str(path) in info.value.message
    return info.value


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    unreadable(tmp_path / "absent.toml")


def test_bad_toml_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('format = "hgan-schema/1"\n[[columns]\nname = "a"\n', encoding="utf-8")
    unreadable(path)


def test_non_utf8_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b'format = "\xff\xfe"\n')
    unreadable(path)


def test_oversized_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"#" * (MAX_SCHEMA_BYTES + 1))
    unreadable(path)


def test_valid_toml_with_invalid_schema_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('format = "hgan-schema/1"\n', encoding="utf-8")
    with pytest.raises(InvalidInput) as info:
        Schema.load(path)
    assert info.value.code == "schema.invalid"
    assert str(path) in info.value.message


# -- names and categories survive TOML -----------------------------------------

_fragment = st.one_of(
    st.sampled_from(['"', "'", "\\", "\\u0041", "\\n", '\\"', "#", "=", "[[columns]]", " ", "\t", "\n", "\r"]),
    st.characters(codec="utf-8").filter(str.isprintable),
)
_printable = st.lists(_fragment, min_size=1, max_size=8).map("".join).filter(lambda s: s.strip() != "")


@settings(max_examples=150, deadline=None)
@given(names=st.lists(_printable, min_size=2, max_size=4, unique=True),
       cats=st.lists(_printable, min_size=2, max_size=5, unique=True))
def test_names_and_categories_survive_dumps_and_load(tmp_path_factory: pytest.TempPathFactory,
                                                     names: list[str], cats: list[str]) -> None:
    columns = [CategoricalColumn(names[0], tuple(cats), role="target"),
               NumericColumn(names[1], -1.5, 2.25)]
    columns += [IgnoredColumn(n, role="drop") for n in names[2:]]
    s = Schema(columns=tuple(columns), na_values=tuple(cats[:1]))
    path = tmp_path_factory.mktemp("rt") / "s.toml"
    path.write_text(s.dumps(), encoding="utf-8")
    loaded = Schema.load(path)
    assert loaded == s
    assert loaded.names == names
    assert loaded.target is not None and loaded.target.categories == tuple(cats)


def test_non_printable_astral_name_survives(tmp_path: Path) -> None:
    s = Schema(columns=(CategoricalColumn("a\U000e0001", ("x", "y")),))
    path = tmp_path / "s.toml"
    path.write_text(s.dumps(), encoding="utf-8")
    assert Schema.load(path) == s
