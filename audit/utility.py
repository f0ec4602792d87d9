"""Utility measurements of synthetic rows against real ones.

Rules:
1. Train on synthetic, test on real (TSTR): a gradient-boosted classifier is
   fitted on one table and scored (AUROC) on the real holdout; the same
   classifier fitted on the real training rows (TRTR) is the reference.
2. Features are the schema's modelled columns; categories enter as the codes
   of the schema's lists, missing values as NaN (handled natively), all read
   by ``column_values``.
3. Every figure is an aggregate; nothing patient-level is returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from hgan.release.schema import CategoricalColumn, Column, Schema


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


def column_values(frame: pd.DataFrame, col: Column) -> np.ndarray:
    """One column as float64: a category as its index in the schema's list, a number as itself,
    NaN where missing (rule 2). Every figure of this module reads columns through it."""
    if isinstance(col, CategoricalColumn):
        codes = pd.Categorical(frame[col.name], categories=list(col.categories)).codes.astype(np.float64)
        return np.where(codes < 0, np.nan, codes)
    return pd.to_numeric(frame[col.name]).to_numpy(dtype=np.float64, na_value=np.nan)


def feature_matrix(frame: pd.DataFrame, schema: Schema, outcome: str) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(X, y, categorical mask): codes for categories, NaN for missing."""
    x, is_cat = all_columns_matrix(frame, schema, [c for c in schema.modelled if c.name != outcome])
    outcome_col = schema.column(outcome)
    y = pd.Categorical(frame[outcome], categories=list(outcome_col.categories)).codes
    return x, y, is_cat


def auroc(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, *, outcome: str,
          seed: int = 0, threads: int = 1) -> float:
    """AUROC on ``test`` of a classifier fitted on ``train`` (macro one-vs-rest if > 2 classes).

    Returns 0.5 when ``train`` holds a single class (a constant predictor).
    """
    return _auc(*_test_scores(train, test, schema, outcome=outcome, seed=seed, threads=threads))


def _test_scores(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, *, outcome: str, seed: int,
                 threads: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(test labels, scores): P(class 1) for two classes, else the probabilities of every class
    (columns in the schema's order); None when ``train`` holds a single class."""
    x_tr, y_tr, is_cat = feature_matrix(train, schema, outcome)
    x_te, y_te, _ = feature_matrix(test, schema, outcome)
    classes = np.unique(y_tr)
    if len(classes) < 2:
        return y_te, None
    model = HistGradientBoostingClassifier(categorical_features=np.array(is_cat), random_state=seed)
    with threadpool_limits(limits=threads):
        model.fit(x_tr, y_tr)
        proba = model.predict_proba(x_te)
    n_classes = len(schema.column(outcome).categories)
    if n_classes == 2:
        return y_te, (proba[:, list(classes).index(1)] if 1 in classes else np.zeros(len(y_te)))
    full = np.zeros((len(y_te), n_classes))
    full[:, classes] = proba
    return y_te, full


def _auc(y: np.ndarray, scores: np.ndarray | None) -> float:
    """AUROC of ``_test_scores``' output; multi-class: over the classes present in ``y``."""
    if scores is None:
        return 0.5
    if scores.ndim == 1:
        return float(roc_auc_score(y, scores))
    present = np.unique(y)
    part = scores[:, present] / np.clip(scores[:, present].sum(1, keepdims=True), 1e-12, None)
    return float(roc_auc_score(y, part, multi_class="ovr", labels=present))


TSTR_BOOTSTRAP = 200  # resamples of the holdout for the TSTR intervals


def tstr(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *,
         outcome: str | None = None, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """TSTR and TRTR AUROC on the holdout, their ratio and the share of signal kept, with 95%
    percentile intervals of the TSTR AUROC and of the ratio over ``TSTR_BOOTSTRAP`` resamples
    of the holdout rows (paired: one resample scores both classifiers). The intervals show how
    much the figures move with the holdout alone (small tables: a lot); they leave out the
    variation of the fits themselves, so they are a lower bound on the uncertainty. A resample
    that lacks a class of the holdout is skipped; None when fewer than half remain."""
    outcome = outcome or schema.target.name
    y, synth_scores = _test_scores(synthetic, holdout, schema, outcome=outcome, seed=seed, threads=threads)
    _, real_scores = _test_scores(train, holdout, schema, outcome=outcome, seed=seed, threads=threads)
    synth_auc, real_auc = _auc(y, synth_scores), _auc(y, real_scores)
    tstr_interval, ratio_interval = _bootstrap_intervals(y, synth_scores, real_scores, seed)
    return {"tstr_auroc": synth_auc, "trtr_auroc": real_auc, "ratio": synth_auc / real_auc,
            "signal_kept": (synth_auc - 0.5) / (real_auc - 0.5) if real_auc > 0.5 else float("nan"),
            "tstr_auroc_interval": tstr_interval, "ratio_interval": ratio_interval}


def _bootstrap_intervals(y: np.ndarray, synth_scores: np.ndarray | None, real_scores: np.ndarray | None,
                         seed: int) -> tuple[list[float] | None, list[float] | None]:
    rng = np.random.default_rng(seed)
    n_classes = len(np.unique(y))
    tstr_aucs, ratios = [], []
    for _ in range(TSTR_BOOTSTRAP):
        idx = rng.integers(len(y), size=len(y))
        if len(np.unique(y[idx])) < n_classes:
            continue
        a = _auc(y[idx], None if synth_scores is None else synth_scores[idx])
        b = _auc(y[idx], None if real_scores is None else real_scores[idx])
        tstr_aucs.append(a)
        ratios.append(a / b)
    if len(tstr_aucs) < TSTR_BOOTSTRAP // 2:
        return None, None
    return ([float(q) for q in np.percentile(tstr_aucs, [2.5, 97.5])],
            [float(q) for q in np.percentile(ratios, [2.5, 97.5])])


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


# -- other-column TSTR, marginal TVD, detection ----------------------------------------------
#
# These read real rows on both sides: exact figures for the benchmarks and for the audit's
# confidential report, never figures the appliance releases about a private table.

OTHER_COLUMN_MIN_SHARE = 0.05   # issue 7: a column is an outcome if its rarest class holds >= 5% of rows
TVD_NUMERIC_BINS = 16           # issue 7: numerics in 16 equal-width bins over the public bounds
DETECTION_FOLDS = 5


def other_column_tstr(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *,
                      seed: int, threads: int = 1) -> dict:
    """TSTR with every other categorical column in turn as the outcome (issue 7, figure 2).

    Eligible: each categorical column of the schema other than the target (string- or
    integer-coded categories alike) whose rarest category holds at least
    ``OTHER_COLUMN_MIN_SHARE`` of the *real training rows* (a category with no row is the
    rarest, so the column is left out). Deciding this from the real rows is fine for a
    benchmark on public demo data; it is not a rule a release could apply to private data.
    Rows whose outcome is missing are left out of that column's fit and score. Features:
    every other modelled column, the target included (``feature_matrix``).

    Returns ``{"columns": {name: {"tstr_auroc", "trtr_auroc", "ratio"}}, "mean_ratio"}``;
    ``mean_ratio`` is NaN when no column is eligible.
    """
    target = schema.target.name if schema.target else None
    scores: dict[str, dict[str, float]] = {}
    for col in _eligible_outcomes(train, schema, exclude=target):
        keep = [f[f[col.name].notna()] for f in (synthetic, train, holdout)]
        scores[col.name] = {k: v for k, v in tstr(*keep, schema, outcome=col.name, seed=seed,
                                                 threads=threads).items() if k != "signal_kept"}
    ratios = [s["ratio"] for s in scores.values()]
    return {"columns": scores, "mean_ratio": float(np.mean(ratios)) if ratios else float("nan")}


def _eligible_outcomes(train: pd.DataFrame, schema: Schema, *, exclude: str | None) -> list[CategoricalColumn]:
    out = []
    for col in schema.modelled:
        if not isinstance(col, CategoricalColumn) or col.name == exclude or len(train) == 0:
            continue
        codes = column_values(train, col)
        shares = np.bincount(codes[~np.isnan(codes)].astype(np.int64), minlength=len(col.categories)) / len(train)
        if shares.min() >= OTHER_COLUMN_MIN_SHARE:
            out.append(col)
    return out


def marginal_cells(frame: pd.DataFrame, schema: Schema,
                   columns: list[Column] | None = None) -> list[tuple[str, np.ndarray, int]]:
    """Each of ``columns`` (default: the modelled columns, target included) as (name, cell index
    per row, number of cells).

    Categories: their index in the schema's list. Numerics: ``TVD_NUMERIC_BINS`` equal-width
    bins over the public bounds, on the log scale where the schema says ``transform = "log"``
    (values outside the bounds are clipped into the end bins). Missing values: one extra,
    last cell, present for every column so that an unexpected missing value still counts.
    """
    out = []
    for col in schema.modelled if columns is None else columns:
        x = column_values(frame, col)
        missing = np.isnan(x)
        if isinstance(col, CategoricalColumn):
            size = len(col.categories)
            idx = np.where(missing, size, x).astype(np.int64)
        else:
            x = np.clip(np.where(missing, col.lower, x), col.lower, col.upper)
            if col.transform == "log":
                u = np.log1p(x - col.lower) / np.log1p(col.upper - col.lower)
            else:
                u = (x - col.lower) / (col.upper - col.lower)
            size = TVD_NUMERIC_BINS
            idx = np.where(missing, size, np.minimum(np.floor(u * size), size - 1)).astype(np.int64)
        out.append((col.name, idx, size + 1))
    return out


def tvd(synthetic: pd.DataFrame, real: pd.DataFrame, schema: Schema, *, order: int,
        columns: list[Column] | None = None) -> float:
    """Mean total-variation distance over all one-way (``order=1``) or two-way (``order=2``)
    marginals of ``columns`` (default: the modelled columns, target included), on the cells of
    ``marginal_cells``.

    TVD of one marginal: half the L1 distance between the two tables' cell shares, so 0 for
    identical shares and 1 for disjoint supports.
    """
    if order not in (1, 2):
        raise ValueError("order must be 1 or 2")
    if len(synthetic) == 0 or len(real) == 0:
        raise ValueError("tvd needs rows on both sides")
    syn, rea = marginal_cells(synthetic, schema, columns), marginal_cells(real, schema, columns)
    groups = [(i,) for i in range(len(syn))] if order == 1 else \
        [(i, j) for i in range(len(syn)) for j in range(i + 1, len(syn))]
    if not groups:
        raise ValueError("tvd of order 2 needs at least two modelled columns")
    distances = []
    for group in groups:
        shares = []
        for table, n in ((syn, len(synthetic)), (rea, len(real))):
            index = np.zeros(n, dtype=np.int64)
            for k in group:
                index = index * table[k][2] + table[k][1]
            size = int(np.prod([table[k][2] for k in group]))
            shares.append(np.bincount(index, minlength=size) / n)
        distances.append(0.5 * np.abs(shares[0] - shares[1]).sum())
    return float(np.mean(distances))


def all_columns_matrix(frame: pd.DataFrame, schema: Schema,
                       columns: list[Column] | None = None) -> tuple[np.ndarray, list[bool]]:
    """``feature_matrix``'s encoding of ``columns`` (default: every modelled column, the target included)."""
    columns = schema.modelled if columns is None else columns
    return (np.column_stack([column_values(frame, col) for col in columns]),
            [isinstance(col, CategoricalColumn) for col in columns])


def detection_auc(synthetic: pd.DataFrame, real_holdout: pd.DataFrame, schema: Schema, *,
                  seed: int, threads: int = 1, columns: list[Column] | None = None) -> float:
    """AUC of a classifier telling real holdout rows from synthetic ones (0.5: indistinguishable).

    Balanced: the synthetic rows are subsampled (without replacement, ``seed``) to the
    holdout's size (or the holdout to the synthetic size if that is smaller). A
    HistGradientBoosting classifier on every modelled column, the target included
    (``all_columns_matrix``), scores each row by ``DETECTION_FOLDS``-fold stratified
    cross-validated predictions; the AUC is computed over all rows at once.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    n = min(len(synthetic), len(real_holdout))
    if n < DETECTION_FOLDS:
        raise ValueError(f"detection needs at least {DETECTION_FOLDS} rows on each side")
    syn = synthetic.iloc[np.sort(rng.choice(len(synthetic), n, replace=False))]
    rea = real_holdout.iloc[np.sort(rng.choice(len(real_holdout), n, replace=False))]
    x_syn, is_cat = all_columns_matrix(syn, schema, columns)
    x_real, _ = all_columns_matrix(rea, schema, columns)
    x = np.vstack([x_real, x_syn])
    label = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    model = HistGradientBoostingClassifier(categorical_features=np.array(is_cat), random_state=seed)
    folds = StratifiedKFold(n_splits=DETECTION_FOLDS, shuffle=True, random_state=seed)
    with threadpool_limits(limits=threads):
        proba = cross_val_predict(model, x, label, cv=folds, method="predict_proba")
    return float(roc_auc_score(label, proba[:, 1]))


# -- per-column fidelity, pairwise association, per class -------------------------------------

def column_fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
                    columns: list[Column] | None = None) -> list[dict]:
    """One row per column of ``columns`` (default: the modelled ones): the distance between the
    real and the synthetic distribution of its present values, and both missing-value rates.

    Categorical: total variation of the category shares (``"tvd"``). Numeric: the
    Kolmogorov-Smirnov statistic, the largest gap between the two empirical CDFs (``"ks"``).
    Both are 0 for identical distributions and 1 for disjoint ones; ``value`` is None when one
    side has no present value.
    """
    rows = []
    for col in schema.modelled if columns is None else columns:
        r, s = column_values(real, col), column_values(synthetic, col)
        if isinstance(col, CategoricalColumn):
            statistic, value = "tvd", _category_tvd(r, s, len(col.categories))
        else:
            statistic, value = "ks", _ks(r, s)
        rows.append({"column": col.name, "statistic": statistic, "value": value,
                     "missing_real": float(np.isnan(r).mean()), "missing_synthetic": float(np.isnan(s).mean())})
    return rows


def _category_tvd(real: np.ndarray, synthetic: np.ndarray, n_categories: int) -> float | None:
    shares = []
    for values in (real, synthetic):
        codes = values[~np.isnan(values)].astype(np.int64)
        if len(codes) == 0:
            return None
        shares.append(np.bincount(codes, minlength=n_categories) / len(codes))
    return float(0.5 * np.abs(shares[0] - shares[1]).sum())


def _ks(real: np.ndarray, synthetic: np.ndarray) -> float | None:
    a, b = (np.sort(x[~np.isnan(x)]) for x in (real, synthetic))
    if len(a) == 0 or len(b) == 0:
        return None
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / len(a)
                               - np.searchsorted(b, grid, side="right") / len(b))))


def association_matrix(frame: pd.DataFrame, schema: Schema,
                       columns: list[Column] | None = None) -> tuple[list[str], np.ndarray]:
    """Pairwise association of ``columns`` (default: the modelled ones): (names, symmetric matrix).

    Two numeric columns: Spearman's rank correlation on the rows where both are present (in
    [-1, 1]; 0 when fewer than 3 such rows or a column is constant there). Any pair with a
    categorical column: Cramer's V of the cells of ``marginal_cells`` (numerics in 16 public
    bins, missing its own cell), in [0, 1]. The diagonal is 1.
    """
    columns = schema.modelled if columns is None else columns
    cells = marginal_cells(frame, schema, columns)
    numeric = {col.name: column_values(frame, col) for col in columns if not isinstance(col, CategoricalColumn)}
    d = len(columns)
    out = np.eye(d)
    for i in range(d):
        for j in range(i + 1, d):
            a, b = columns[i].name, columns[j].name
            if a in numeric and b in numeric:
                value = _spearman(numeric[a], numeric[b])
            else:
                value = _cramers_v(cells[i][1], cells[i][2], cells[j][1], cells[j][2])
            out[i, j] = out[j, i] = value
    return [c.name for c in columns], out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    both = ~(np.isnan(x) | np.isnan(y))
    if both.sum() < 3:
        return 0.0
    rx, ry = (pd.Series(v[both]).rank().to_numpy() for v in (x, y))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def _cramers_v(a: np.ndarray, size_a: int, b: np.ndarray, size_b: int) -> float:
    table = np.bincount(a * size_b + b, minlength=size_a * size_b).reshape(size_a, size_b).astype(np.float64)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    k = min(table.shape) - 1
    n = table.sum()
    if k == 0 or n == 0:
        return 0.0
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(min(chi2 / (n * k), 1.0)))


def association_difference(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
                           columns: list[Column] | None = None) -> dict:
    """Both association matrices, and the mean and largest absolute difference off the diagonal."""
    names, a = association_matrix(real, schema, columns)
    _, b = association_matrix(synthetic, schema, columns)
    off = ~np.eye(len(names), dtype=bool)
    diff = np.abs(a - b)[off]
    return {"columns": names, "real": a.round(4).tolist(), "synthetic": b.round(4).tolist(),
            "mean_abs_difference": float(diff.mean()) if diff.size else None,
            "max_abs_difference": float(diff.max()) if diff.size else None}


def per_class(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *,
              seed: int, threads: int = 1) -> list[dict]:
    """The target-conditional case: for each class of the target, the synthetic rows of that class
    against the real rows of that class, on every other modelled column.

    Per class: the mean per-column fidelity (``column_fidelity`` against the training rows), the
    mean one- and two-way TVD and the detection AUC (against the holdout rows), and the mean
    association difference (training rows). A class with no synthetic or no real row, or too few
    rows for detection, reports None for the figures it cannot compute and says why.
    """
    if schema.target is None:
        return []
    target = schema.target
    others = [c for c in schema.modelled if c.name != target.name]
    out = []
    for label in target.categories:
        syn, tr, ho = (f[f[target.name] == label] for f in (synthetic, train, holdout))
        row: dict = {"class": label, "synthetic_share": float(len(syn) / max(len(synthetic), 1))}
        if min(len(syn), len(tr), len(ho)) == 0:
            out.append({**row, "skipped": "no synthetic or no real row of this class"})
            continue
        fidelity = [r["value"] for r in column_fidelity(tr, syn, schema, others) if r["value"] is not None]
        row["mean_fidelity_distance"] = float(np.mean(fidelity)) if fidelity else None
        row["tvd_1way"] = tvd(syn, ho, schema, order=1, columns=others)
        row["tvd_2way"] = tvd(syn, ho, schema, order=2, columns=others) if len(others) >= 2 else None
        row["association_mean_abs_difference"] = association_difference(tr, syn, schema, others)[
            "mean_abs_difference"]
        try:
            row["detection_auc"] = detection_auc(syn, ho, schema, seed=seed, threads=threads, columns=others)
        except ValueError as exc:
            row["detection_auc"], row["detection_skipped"] = None, str(exc)
        out.append(row)
    return out
