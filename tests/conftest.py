"""Shared fixtures: small schemas and frames built by hand, and the shipped demo tables."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hgan.release.schema import Schema

torch.set_num_threads(1)

DEMO = Path(str(resources.files("hgan.appliance") / "demo_data"))


def mixed_schema() -> Schema:
    """Every column type: log numeric, nullable float, wide integer, small integer,
    string and integer categories, nullable category, an id, a target."""
    return Schema.from_dict({
        "format": "hgan-schema/1",
        "columns": [
            {"name": "pid", "role": "id"},
            {"name": "age", "type": "numeric", "lower": 18, "upper": 100, "integer": True},
            {"name": "grade", "type": "numeric", "lower": 1, "upper": 4, "integer": True},
            {"name": "marker", "type": "numeric", "lower": 0, "upper": 5000, "transform": "log"},
            {"name": "creat", "type": "numeric", "lower": 0.2, "upper": 12.0, "nullable": True},
            {"name": "count", "type": "numeric", "lower": 0, "upper": 200, "integer": True,
             "nullable": True},
            {"name": "sex", "type": "categorical", "categories": ["F", "M"]},
            {"name": "stage", "type": "categorical", "categories": [1, 2, 3], "nullable": True},
            {"name": "death", "type": "categorical", "categories": [0, 1], "role": "target"},
        ],
    })


def mixed_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Canonical typed rows for ``mixed_schema`` (as ``load_table`` returns them)."""
    rng = np.random.default_rng(seed)
    creat = rng.uniform(0.2, 12.0, n)
    creat[rng.random(n) < 0.2] = np.nan
    count = rng.integers(0, 201, n).astype(float)
    count[rng.random(n) < 0.1] = np.nan
    stage = pd.Categorical(rng.choice([1, 2, 3], n), categories=[1, 2, 3])
    stage[rng.random(n) < 0.15] = np.nan
    return pd.DataFrame({
        "age": rng.integers(18, 101, n).astype(float),
        "grade": rng.integers(1, 5, n).astype(float),
        "marker": np.exp(rng.uniform(0, np.log(5001), n)) - 1,
        "creat": creat,
        "count": count,
        "sex": pd.Categorical(rng.choice(["F", "M"], n), categories=["F", "M"]),
        "stage": stage,
        "death": pd.Categorical(rng.choice([0, 1], n), categories=[0, 1]),
    })


@pytest.fixture
def schema() -> Schema:
    return mixed_schema()


@pytest.fixture
def frame() -> pd.DataFrame:
    return mixed_frame()
