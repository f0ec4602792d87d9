"""The numeric space the attacks measure distances and densities in, from the schema alone.

Rules (invariant 2 of DESIGN.md; the adversary knows the public schema):
1. A frame must hold exactly the schema's modelled columns (features and
   target, in any order); anything else is a caller error (``ValueError``
   naming the frame and the columns).
2. Rows are encoded by the schema codec (``release/codec.py``, no fine
   columns), one row at a time; nothing is fitted to data, so the space is
   the same for the synthetic rows, the targets and the reference rows.
3. A numeric column becomes its position on the public scale, in [0, 1]:
   ``(code + (offset + 1) / 2) / bins`` for a binned column (after the
   schema's log transform), ``code / (values - 1)`` for a column with one code
   per integer. A nullable numeric column adds a missing indicator (0 or 1);
   a missing value sits at position 0.
4. A categorical column (and the target) becomes a one-hot block scaled by
   1/sqrt(2), so two different categories are at distance 1, as are the two
   ends of a numeric range; a missing category is its own code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hgan.release.codec import Codec, ColumnCode
from hgan.release.schema import CategoricalColumn, Schema

_ONE_HOT_SCALE = 1.0 / math.sqrt(2.0)


def check_columns(frame: pd.DataFrame, schema: Schema, role: str) -> None:
    """Rule 1: ``frame`` (called ``role`` in messages) has exactly the modelled columns."""
    expected = [c.name for c in schema.modelled]
    missing = [n for n in expected if n not in frame.columns]
    extra = [str(n) for n in frame.columns if n not in expected]
    if missing or extra:
        raise ValueError(f"{role}: columns differ from the schema's modelled columns "
                         f"(missing: {missing or 'none'}; unexpected: {extra or 'none'}); "
                         "pass frames as load_table or sample return them")


def attack_features(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Rows -> (n, d) float64 points of the attack space (rules 2-4)."""
    codec = Codec(schema)
    codes, offsets = codec.encode_codes(frame)
    blocks: list[np.ndarray] = []
    k = 0
    for j, (col, cc) in enumerate(zip(codec.features, codec.columns)):
        offset = offsets[:, k].astype(np.float64) if cc.has_offset else None
        k += cc.has_offset
        if isinstance(col, CategoricalColumn):
            blocks.append(_one_hot(codes[:, j], cc.n_codes))
        else:
            blocks.append(_numeric_position(codes[:, j], offset, cc))
    if codec.target is not None:
        blocks.append(_one_hot(codec.encode_target(frame), codec.n_classes))
    return np.hstack(blocks)


def _one_hot(codes: np.ndarray, n_codes: int) -> np.ndarray:
    out = np.zeros((len(codes), n_codes))
    out[np.arange(len(codes)), codes] = _ONE_HOT_SCALE
    return out


def _numeric_position(codes: np.ndarray, offset: np.ndarray | None, cc: ColumnCode) -> np.ndarray:
    missing = codes == cc.missing_code if cc.nullable else np.zeros(len(codes), dtype=bool)
    if offset is not None:
        position = (codes + (offset + 1.0) / 2.0) / cc.value_codes
    else:
        position = codes / (cc.value_codes - 1)
    position = np.where(missing, 0.0, np.clip(position, 0.0, 1.0))
    if not cc.nullable:
        return position[:, None]
    return np.column_stack([position, missing.astype(np.float64)])
