"""Exact and near copies: known answers for copied, independent and hand-made rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hgan.audit.copies import DCR_BIN_EDGES, copy_figures, exact_copies
from tests.conftest import mixed_frame, mixed_schema


def test_copies_of_the_training_rows_are_all_found():
    schema = mixed_schema()
    members, non_members = mixed_frame(300, seed=0), mixed_frame(300, seed=1)
    figures = copy_figures(members.sample(frac=1, random_state=0), members, non_members, schema)
    exact, dcr = figures["exact"], figures["dcr"]
    assert exact["synthetic_identical_to_a_member"] == 1.0 and exact["members_reproduced"] == 1.0
    assert exact["non_members_reproduced"] == 0.0 and exact["synthetic_identical_to_a_non_member"] == 0.0
    assert dcr["members"][0] == 1.0 and dcr["non_members"][0] == 0.0
    assert len(dcr["members"]) == len(DCR_BIN_EDGES) - 1 and dcr["bin_edges"][-1] is None


def test_independent_rows_put_members_and_non_members_alike():
    schema = mixed_schema()
    synthetic, members, non_members = (mixed_frame(1000, seed=s) for s in (7, 0, 1))
    figures = copy_figures(synthetic, members, non_members, schema)
    assert figures["exact"]["members_reproduced"] == figures["exact"]["non_members_reproduced"] == 0.0
    dcr = figures["dcr"]
    assert sum(dcr["members"]) == pytest.approx(1.0) and sum(dcr["non_members"]) == pytest.approx(1.0)
    assert np.abs(np.array(dcr["members"]) - np.array(dcr["non_members"])).max() < 0.08
    assert dcr["members"][0] == 0.0


def test_identity_is_on_modelled_columns_with_missing_equal_to_missing():
    schema = mixed_schema()
    row = mixed_frame(1, seed=3).assign(creat=np.nan, stage=pd.Categorical([np.nan], categories=[1, 2, 3]))
    other = row.assign(age=row["age"] + 1)
    exact = exact_copies(pd.concat([row, other], ignore_index=True), row, other.assign(sex="M"), schema)
    assert exact["members_reproduced"] == 1.0        # NaN == NaN, missing category == missing category
    assert exact["synthetic_identical_to_a_member"] == 0.5
    assert exact["non_members_reproduced"] == (1.0 if other["sex"].iloc[0] == "M" else 0.0)


def test_a_frame_without_the_schema_columns_is_refused():
    schema = mixed_schema()
    frame = mixed_frame(10)
    with pytest.raises(ValueError, match="members: columns differ"):
        copy_figures(frame, frame.drop(columns=["age"]), frame, schema)
