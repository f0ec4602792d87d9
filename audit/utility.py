"""Utility measurements of synthetic rows against real ones.

Rules:
1. Train on synthetic, test on real (TSTR): a gradient-boosted classifier is
   fitted on one table and scored (AUROC) on the real holdout; the same
   classifier fitted on the real training rows (TRTR) is the reference.
2. Features are the schema's modelled columns; categories enter as the codes
   of the schema's lists, missing values as NaN (handled natively).
3. Every figure is an aggregate; nothing patient-level is returned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from hgan.release.schema import CategoricalColumn, Schema


def stratified_split(frame: pd.DataFrame, schema: Schema, *, holdout: float,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle and hold out a share of the rows, stratified by the target if any."""
    rng = np.random.default_rng(seed)
    target = schema.target
    groups = frame.groupby(frame[target.name], observed=True).indices if target else {"all": np.arange(len(frame))}
    held = []
    for idx in groups.values():
        idx = rng.permutation(idx)
        held.append(idx[: int(round(holdout * len(idx)))])
    mask = np.zeros(len(frame), dtype=bool)
    mask[np.concatenate(held)] = True
    order = rng.permutation(len(frame))
    shuffled_mask = mask[order]
    rows = frame.iloc[order]
    return rows[~shuffled_mask].reset_index(drop=True), rows[shuffled_mask].reset_index(drop=True)


def feature_matrix(frame: pd.DataFrame, schema: Schema, outcome: str) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(X, y, categorical mask): codes for categories, NaN for missing."""
    cols, is_cat = [], []
    for col in schema.modelled:
        if col.name == outcome:
            continue
        if isinstance(col, CategoricalColumn):
            codes = pd.Categorical(frame[col.name], categories=list(col.categories)).codes.astype(np.float64)
            cols.append(np.where(codes < 0, np.nan, codes))
            is_cat.append(True)
        else:
            cols.append(pd.to_numeric(frame[col.name]).to_numpy(dtype=np.float64, na_value=np.nan))
            is_cat.append(False)
    outcome_col = schema.column(outcome)
    y = pd.Categorical(frame[outcome], categories=list(outcome_col.categories)).codes
    return np.column_stack(cols), y, is_cat


def auroc(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, *, outcome: str,
          seed: int = 0, threads: int = 1) -> float:
    """AUROC on ``test`` of a classifier fitted on ``train`` (macro one-vs-rest if > 2 classes).

    Returns 0.5 when ``train`` holds a single class (a constant predictor).
    """
    x_tr, y_tr, is_cat = feature_matrix(train, schema, outcome)
    x_te, y_te, _ = feature_matrix(test, schema, outcome)
    classes = np.unique(y_tr)
    if len(classes) < 2:
        return 0.5
    model = HistGradientBoostingClassifier(categorical_features=np.array(is_cat), random_state=seed)
    with threadpool_limits(limits=threads):
        model.fit(x_tr, y_tr)
        proba = model.predict_proba(x_te)
    n_classes = len(schema.column(outcome).categories)
    if n_classes == 2:
        score = proba[:, list(classes).index(1)] if 1 in classes else np.zeros(len(y_te))
        return float(roc_auc_score(y_te, score))
    full = np.zeros((len(y_te), n_classes))
    full[:, classes] = proba
    present = np.unique(y_te)
    full = full[:, present] / np.clip(full[:, present].sum(1, keepdims=True), 1e-12, None)
    return float(roc_auc_score(y_te, full, multi_class="ovr", labels=present))


def tstr(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *,
         outcome: str | None = None, seed: int = 0, threads: int = 1) -> dict[str, float]:
    """TSTR and TRTR AUROC on the holdout, their ratio and the share of signal kept."""
    outcome = outcome or schema.target.name
    synth_auc = auroc(synthetic, holdout, schema, outcome=outcome, seed=seed, threads=threads)
    real_auc = auroc(train, holdout, schema, outcome=outcome, seed=seed, threads=threads)
    return {"tstr_auroc": synth_auc, "trtr_auroc": real_auc, "ratio": synth_auc / real_auc,
            "signal_kept": (synth_auc - 0.5) / (real_auc - 0.5) if real_auc > 0.5 else float("nan")}


def marginals(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> list[dict]:
    """Per-column side-by-side: mean (numeric) or share of each category, and missing rates."""
    rows = []
    for col in schema.modelled:
        r, s = real[col.name], synthetic[col.name]
        if isinstance(col, CategoricalColumn):
            for cat in col.categories:
                rows.append({"column": col.name, "statistic": f"share {cat}",
                             "real": float((r == cat).mean()), "synthetic": float((s == cat).mean())})
        else:
            rows.append({"column": col.name, "statistic": "mean",
                         "real": float(pd.to_numeric(r).mean()), "synthetic": float(pd.to_numeric(s).mean())})
        if col.nullable:
            rows.append({"column": col.name, "statistic": "missing",
                         "real": float(r.isna().mean()), "synthetic": float(s.isna().mean())})
    return rows
