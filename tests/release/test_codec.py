"""Codec: schema-only layout, per-row encoding, reversible decoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hgan.release.codec import FINE_BINS, MAX_INTEGER_CODES, NUMERIC_BINS, Codec
from hgan.release.schema import Schema
from tests.conftest import mixed_frame, mixed_schema


def test_layout_comes_from_schema_alone():
    codec = Codec(mixed_schema())
    # age: 83 integers > MAX_INTEGER_CODES -> bins; grade: 4 codes; marker: bins;
    # creat: bins + missing; count: bins + missing; sex 2; stage 3 + missing
    assert codec.head_sizes == [NUMERIC_BINS, 4, NUMERIC_BINS, NUMERIC_BINS + 1, NUMERIC_BINS + 1, 2, 4]
    assert codec.n_offsets == 4
    assert codec.n_classes == 2
    assert codec.width == sum(codec.head_sizes) + 4
    assert 4 <= MAX_INTEGER_CODES < 83


def test_round_trip_every_column_type_with_missing_values():
    schema = mixed_schema()
    codec = Codec(schema)
    frame = mixed_frame(500)
    codes, offsets = codec.encode_codes(frame)
    back = codec.decode(codes, offsets, codec.encode_target(frame))
    assert list(back.columns) == [c.name for c in schema.modelled]
    # integers come back exactly (rounding undoes the bin offset), as integers
    assert back["age"].dtype == np.int64 and (back["age"].to_numpy() == frame["age"].to_numpy()).all()
    assert back["grade"].dtype == np.int64 and (back["grade"].to_numpy() == frame["grade"].to_numpy()).all()
    # nullable integer: pandas Int64 with the same missing positions and values
    assert str(back["count"].dtype) == "Int64"
    assert (back["count"].isna().to_numpy() == frame["count"].isna().to_numpy()).all()
    present = frame["count"].notna().to_numpy()
    assert (back["count"].to_numpy()[present].astype(float) == frame["count"].to_numpy()[present]).all()
    # floats: exact up to float32 offsets, missing preserved
    np.testing.assert_allclose(back["marker"], frame["marker"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(back["creat"], frame["creat"], rtol=1e-5, atol=1e-5)
    # categories: the schema's list, missing where missing
    assert list(back["stage"].cat.categories) == [1, 2, 3]
    pd.testing.assert_series_equal(back["stage"], frame["stage"], check_names=False)
    pd.testing.assert_series_equal(back["sex"], frame["sex"], check_names=False)
    pd.testing.assert_series_equal(back["death"], frame["death"], check_names=False)


def test_a_fine_column_halves_each_bin_and_round_trips():
    coarse, fine = Codec(mixed_schema()), Codec(mixed_schema(), fine_columns=("creat", "marker"))
    assert fine.fine_columns == ("marker", "creat")  # schema order
    assert fine.head_sizes == [NUMERIC_BINS, 4, FINE_BINS, FINE_BINS + 1, NUMERIC_BINS + 1, 2, 4]
    frame = mixed_frame(500)
    (c16, _), (c32, off32) = coarse.encode_codes(frame), fine.encode_codes(frame)
    for j, name in ((2, "marker"), (3, "creat")):
        present = c16[:, j] < NUMERIC_BINS
        assert (c32[present, j] // 2 == c16[present, j]).all()      # every fine bin lies in one coarse bin
        assert (c32[~present, j] == FINE_BINS).all()                 # missing stays the last code
        assert len(np.unique(c32[present, j])) > len(np.unique(c16[present, j]))
    back = fine.decode(c32, off32, fine.encode_target(frame))
    np.testing.assert_allclose(back["marker"], frame["marker"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(back["creat"], frame["creat"], rtol=1e-5, atol=1e-5)
    assert fine.parameters["fine_columns"] == ["marker", "creat"]


@pytest.mark.parametrize("names", [("grade",), ("sex",), ("nope",), ("marker", "marker")])
def test_only_binned_numeric_features_can_be_fine(names):
    with pytest.raises(ValueError, match="fine columns"):
        Codec(mixed_schema(), fine_columns=names)


def test_encoding_of_a_row_does_not_depend_on_the_other_rows():
    """Invariant 2: two tables that differ in one extreme row encode shared rows identically."""
    codec = Codec(mixed_schema())
    base = mixed_frame(300, seed=1)
    extreme = base.copy()
    extreme.loc[0, ["age", "marker", "creat", "count"]] = [100.0, 5000.0, 12.0, 200.0]
    xa, ya = codec.encode(base)
    xb, yb = codec.encode(extreme)
    assert not np.array_equal(xa[0], xb[0])
    np.testing.assert_array_equal(xa[1:], xb[1:])
    np.testing.assert_array_equal(ya, yb)


def test_vectors_are_one_hot_per_head_plus_offsets_in_range():
    codec = Codec(mixed_schema())
    x, _ = codec.encode(mixed_frame(100))
    start = 0
    for size in codec.head_sizes:
        block = x[:, start:start + size]
        assert ((block == 0) | (block == 1)).all() and (block.sum(1) == 1).all()
        start += size
    assert (np.abs(x[:, start:]) <= 1).all()


def test_decode_never_leaves_bounds_even_for_wild_offsets():
    schema = mixed_schema()
    codec = Codec(schema)
    rng = np.random.default_rng(0)
    n = 1000
    codes = np.column_stack([rng.integers(0, s, n) for s in codec.head_sizes])
    offsets = rng.normal(0, 5, (n, codec.n_offsets)).astype(np.float32)
    out = codec.decode(codes, offsets, rng.integers(0, 2, n))
    for col in schema.modelled:
        if hasattr(col, "lower"):
            values = pd.to_numeric(out[col.name]).dropna()
            assert values.min() >= col.lower and values.max() <= col.upper, col.name


def test_missing_value_in_non_nullable_column_is_refused():
    codec = Codec(mixed_schema())
    frame = mixed_frame(10)
    frame.loc[3, "age"] = np.nan
    with pytest.raises(ValueError, match="age"):
        codec.encode(frame)


def test_decimals_round_decoded_values_inside_bounds():
    raw = mixed_schema().to_dict()
    for col in raw["columns"]:
        if col["name"] == "marker":
            col["decimals"] = 1
    from hgan.release.schema import Schema

    codec = Codec(Schema.from_dict(raw))
    frame = mixed_frame(300)
    codes, offsets = codec.encode_codes(frame)
    back = codec.decode(codes, offsets, codec.encode_target(frame))
    values = back["marker"].to_numpy()
    np.testing.assert_allclose(values, np.round(values, 1))
    assert values.min() >= 0 and values.max() <= 5000
    # half a step, or one step where the nearest value of one decimal lies across a bin edge (rule 3)
    np.testing.assert_allclose(values, frame["marker"], atol=0.1 + 1e-9)
    assert (np.abs(values - frame["marker"]) <= 0.05 + 1e-9).mean() > 0.98


def test_rounded_numbers_stay_in_the_bin_they_were_drawn_in():
    """Rule 3: integers (a wide integer range, a log scale with narrow low bins) and numbers with
    decimals encode back to their drawn code wherever the bin holds a value of that precision."""
    schema = Schema.from_dict({"format": "hgan-schema/1", "columns": [
        {"name": "age", "type": "numeric", "lower": 18, "upper": 100, "integer": True},
        {"name": "pgr", "type": "numeric", "lower": 0, "upper": 5000, "integer": True, "transform": "log"},
        {"name": "dose", "type": "numeric", "lower": 0, "upper": 3, "decimals": 1},
        {"name": "y", "type": "categorical", "categories": [0, 1], "role": "target"}]})
    codec = Codec(schema)
    n, rng = 20_000, np.random.default_rng(0)
    codes = rng.integers(0, 16, (n, 3))
    offsets = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    back, _ = codec.encode_codes(codec.decode(codes, offsets, np.zeros(n, dtype=np.int64)))
    possible = np.zeros((3, 16), dtype=bool)  # the bins that hold a value of the column's precision
    for j, grid in enumerate([np.arange(18, 101), np.arange(0, 5001), np.round(np.arange(0, 31) / 10, 1)]):
        frame = pd.DataFrame({c.name: grid[0] for c in schema.features} | {schema.features[j].name: grid})
        possible[j, np.unique(codec.encode_codes(frame)[0][:, j])] = True
    assert (back == codes)[possible[np.arange(3), codes]].all()
