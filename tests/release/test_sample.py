"""Sampling: class control, seeding, dtypes, output files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hgan.release.errors import InvalidInput
from hgan.release.model import load_model
from hgan.release.sample import class_counts, sample, write_table
from tests.conftest import mixed_schema
from tests.release.test_model import write


@pytest.fixture
def model(tmp_path):
    write(tmp_path / "m")
    return load_model(tmp_path / "m")


def test_rows_have_schema_columns_dtypes_and_bounds(model):
    out = sample(model, 2000, seed=1)
    schema = mixed_schema()
    assert list(out.columns) == [c.name for c in schema.modelled]
    assert out["age"].dtype == np.int64 and out["age"].between(18, 100).all()
    assert str(out["count"].dtype) == "Int64"
    assert list(out["sex"].cat.categories) == ["F", "M"] and out["sex"].notna().all()
    assert out["creat"].dropna().between(0.2, 12.0).all()
    # an untrained generator still produces every code now and then, missing values included
    assert out["stage"].isna().any() and out["creat"].isna().any()


def test_same_seed_same_rows_other_seed_other_rows(model):
    a, b, c = sample(model, 300, seed=7), sample(model, 300, seed=7), sample(model, 300, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_where_draws_only_that_class(model):
    out = sample(model, 500, where={"death": "1"}, seed=0)
    assert (out["death"] == 1).all()


def test_ratio_sets_exact_class_counts(model):
    assert class_counts(model, 1001, ratio={"0": 1.0, "1": 1.0}).tolist() == [501, 500]
    out = sample(model, 90, ratio={"0": 2.0, "1": 1.0}, seed=0)
    assert (out["death"] == 0).sum() == 60


def test_default_follows_the_model_class_prior(model):
    assert class_counts(model, 1000).tolist() == [600, 400]


@pytest.mark.parametrize("where", [{"sex": "F"}, {"death": "7"}, {"death": "1", "sex": "F"}])
def test_bad_where_is_an_input_error(model, where):
    with pytest.raises(InvalidInput) as err:
        sample(model, 10, where=where)
    assert err.value.code == "sample.options"


def test_write_table_csv_and_parquet_and_no_overwrite(model, tmp_path):
    out = sample(model, 50, seed=0)
    write_table(out, tmp_path / "s.csv")
    write_table(out, tmp_path / "s.parquet")
    assert len(pd.read_csv(tmp_path / "s.csv")) == 50
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert back["age"].dtype == np.int64 and len(back) == 50
    with pytest.raises(InvalidInput) as err:
        write_table(out, tmp_path / "s.csv")
    assert err.value.code == "output.exists"
    with pytest.raises(InvalidInput):
        write_table(out, tmp_path / "s.xlsx")
