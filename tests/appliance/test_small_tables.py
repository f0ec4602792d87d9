"""Small tables (issue 7): a few hundred real rows at a low epsilon still give valid rows.

Every method is noisy on such tables; what must hold is that the generator's rows are
valid (inside the schema, no column collapsed onto one value) and that the audit says
how uncertain its figures are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hgan.appliance import marginal
from hgan.appliance.data import load_table
from hgan.appliance.demo import demo_file
from hgan.appliance.train import TrainOptions, train
from hgan.audit.utility import stratified_split, tstr
from hgan.release.model import load_model
from hgan.release.sample import sample
from hgan.release.schema import CategoricalColumn, Schema

ROWS = 300


@pytest.fixture(scope="module")
def small_rotterdam():
    schema = Schema.load(demo_file("rotterdam.schema.toml"))
    frame = load_table(demo_file("rotterdam.csv"), schema)
    return schema, frame.sample(ROWS, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize("epsilon", [0.5, 1.0])
def test_a_few_hundred_rows_give_valid_rows_with_no_collapsed_column(tmp_path, small_rotterdam, epsilon,
                                                                     monkeypatch):
    monkeypatch.setattr(marginal, "FIT_STEPS_FINAL", 300)
    schema, frame = small_rotterdam
    train(frame, schema, out=tmp_path / "m", options=TrainOptions(epsilon=epsilon, seed=0))
    rows = sample(load_model(tmp_path / "m"), 2000, seed=1)
    assert set(rows.columns) == {c.name for c in schema.features} | {schema.target.name}
    for column in schema.features:
        real, synthetic = frame[column.name], rows[column.name]
        if real.nunique() > 1:
            assert synthetic.nunique() > 1, f"{column.name} collapsed onto one value"
            assert synthetic.value_counts(normalize=True).iloc[0] < 0.98, f"{column.name} nearly collapsed"
        if isinstance(column, CategoricalColumn):
            assert set(synthetic.dropna().unique()) <= set(column.categories)
        else:
            values = pd.to_numeric(synthetic).dropna()
            assert values.between(column.lower, column.upper).all()
    target = schema.target
    assert set(rows[target.name].unique()) == set(frame[target.name].unique())


def test_the_tstr_interval_is_wide_on_a_small_table_and_narrow_on_a_large_one(small_rotterdam):
    """The audit's uncertainty statement grows as the holdout shrinks (real rows stand in for
    synthetic ones, so only the sizes differ)."""
    schema, _ = small_rotterdam
    frame = load_table(demo_file("rotterdam.csv"), schema)
    widths = {}
    for n in (ROWS, len(frame)):
        train_rows, holdout = stratified_split(frame.sample(n, random_state=1).reset_index(drop=True), schema,
                                               holdout=0.2, seed=0)
        result = tstr(train_rows, train_rows, holdout, schema, seed=0)
        low, high = result["tstr_auroc_interval"]
        assert low <= result["tstr_auroc"] <= high
        widths[n] = high - low
    assert widths[ROWS] > 2 * widths[len(frame)]
    assert np.isfinite(list(widths.values())).all()
