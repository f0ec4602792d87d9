"""Exact and near copies of real rows among the synthetic rows (reported, never a guarantee).

A DP generator can emit a training row by chance (a common row is likely to be drawn), and
a leaky one can leak without emitting any row verbatim; so these figures inform the officer
next to the attacks, they do not decide anything.

Rules:
1. Two rows are identical when every modelled column is equal: a category by its index in
   the schema's list, a number by value, and missing equals missing. Nothing else (ids,
   dropped columns) is compared.
2. ``exact`` compares members (training rows) and non-members (holdout rows never used in
   training) alike: the share of the synthetic rows identical to some member, and the share
   of members (of non-members) that occur among the synthetic rows. A member rate well above
   the non-member rate is memorisation; equal rates are rows that are simply common.
3. ``dcr`` is the distance of each member and each non-member to its closest synthetic row in
   the attack space of ``features.py`` (a change of category, or a numeric column's whole
   range, is distance 1), reported as the share of each set in the fixed bins
   ``DCR_BIN_EDGES``: counts in public bins, never one row's distance.
4. Aggregates only: shares and the sizes of the sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from hgan.audit.features import attack_features, check_columns
from hgan.audit.utility import all_columns_matrix
from hgan.release.schema import Schema

DCR_BIN_EDGES: tuple[float, ...] = (0.0, 1e-6, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, float("inf"))
"""Rule 3: bin k holds distances in [edge k, edge k+1); the first bin is 'an exact copy in the space'."""


def copy_figures(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                 schema: Schema) -> dict:
    """Rules 1-4: ``{"exact": {...}, "dcr": {...}}`` for the officer's page."""
    for role, frame in (("synthetic", synthetic), ("members", members), ("non-members", non_members)):
        check_columns(frame, schema, role)
        if len(frame) == 0:
            raise ValueError(f"{role}: no rows; copies need rows in every set")
    return {"exact": exact_copies(synthetic, members, non_members, schema),
            "dcr": dcr_histogram(synthetic, members, non_members, schema)}


def exact_copies(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                 schema: Schema) -> dict:
    """Rule 2."""
    syn, mem, non = (_row_keys(f, schema) for f in (synthetic, members, non_members))
    return {
        "synthetic_identical_to_a_member": float(np.isin(syn, mem).mean()),
        "synthetic_identical_to_a_non_member": float(np.isin(syn, non).mean()),
        "members_reproduced": float(np.isin(mem, syn).mean()),
        "non_members_reproduced": float(np.isin(non, syn).mean()),
        "n_synthetic": len(synthetic), "n_members": len(members), "n_non_members": len(non_members),
    }


def dcr_histogram(synthetic: pd.DataFrame, members: pd.DataFrame, non_members: pd.DataFrame,
                  schema: Schema) -> dict:
    """Rule 3: the shares of members and of non-members in each distance bin."""
    neighbours = NearestNeighbors(n_neighbors=1).fit(attack_features(synthetic, schema))
    edges = np.asarray(DCR_BIN_EDGES)
    out: dict = {"bin_edges": [None if not np.isfinite(e) else float(e) for e in edges]}
    for role, frame in (("members", members), ("non_members", non_members)):
        distance = neighbours.kneighbors(attack_features(frame, schema))[0][:, 0]
        counts = np.histogram(distance, bins=edges)[0]
        out[role] = [float(c) for c in counts / len(frame)]
    return out


def _row_keys(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Rule 1: one 64-bit hash per row of the canonical values of the modelled columns."""
    values, _ = all_columns_matrix(frame, schema)  # category indices and numbers, NaN where missing
    canonical = np.where(np.isnan(values), np.inf, values + 0.0)  # one missing marker; -0.0 == 0.0
    return pd.util.hash_pandas_object(pd.DataFrame(canonical), index=False).to_numpy()
