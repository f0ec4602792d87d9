"""Sampling synthetic rows from a loaded generator.

Rules:
1. Sampling reads only the model (post-processing: it costs no privacy).
2. Classes follow, in order of precedence: ``where`` (one class), ``ratio``
   (public proportions given by the user), else the model's DP class prior.
   Class counts are exact: ``n * share`` rounded by largest remainder.
3. A seed makes the output reproducible; without one, fresh OS entropy.
4. Work is vectorised in chunks of ``CHUNK`` rows (bounded memory).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from hgan.release.errors import InvalidInput
from hgan.release.model import Model

CHUNK = 65_536
MAX_ROWS = 100_000_000


def class_counts(model: Model, n: int, *, where: Mapping[str, str] | None = None,
                 ratio: Mapping[str, float] | None = None) -> np.ndarray:
    """How many rows of each class to draw (rule 2)."""
    codec = model.codec
    shares = np.asarray(model.class_prior, dtype=np.float64)
    if where:
        shares = np.zeros(codec.n_classes)
        shares[_class_index(model, where)] = 1.0
    elif ratio:
        shares = np.zeros(codec.n_classes)
        for label, weight in ratio.items():
            if not (weight >= 0 and np.isfinite(weight)):
                raise InvalidInput("sample.options", f"--ratio: the weight of class {label!r} must be >= 0",
                                   hint="write the ratio as CLASS=WEIGHT,..., e.g. 0=1,1=1")
            shares[_class_index(model, {_target_name(model): label})] += weight
        if shares.sum() <= 0:
            raise InvalidInput("sample.options", "--ratio: the weights sum to zero",
                               hint="give at least one class a positive weight")
        shares /= shares.sum()
    raw = shares * n
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def sample(model: Model, n: int, *, where: Mapping[str, str] | None = None,
           ratio: Mapping[str, float] | None = None, seed: int | None = None,
           device: str = "cpu") -> pd.DataFrame:
    """Draw ``n`` synthetic rows with the schema's columns and dtypes."""
    if not 1 <= n <= MAX_ROWS:
        raise InvalidInput("sample.options", f"-n must be between 1 and {MAX_ROWS}", hint="e.g. -n 10000")
    counts = class_counts(model, n, where=where, ratio=ratio)
    seed_value = seed if seed is not None else secrets.randbits(63)
    cpu_rng = torch.Generator().manual_seed(seed_value)
    rng = cpu_rng if device == "cpu" else torch.Generator(device=device).manual_seed(seed_value)
    classes = torch.repeat_interleave(torch.arange(len(counts)), torch.as_tensor(counts))
    classes = classes[torch.randperm(n, generator=cpu_rng)]
    generator = model.generator.to(device)
    codes, offsets = [], []
    for start in range(0, n, CHUNK):
        y = classes[start:start + CHUNK].to(device)
        z = torch.randn(len(y), generator.config.latent_dim, generator=rng, device=device)
        c, o = generator.draw(z, y, rng)
        codes.append(c.cpu().numpy())
        offsets.append(o.cpu().numpy())
    return model.codec.decode(np.concatenate(codes), np.concatenate(offsets), classes.numpy())


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write CSV or Parquet (by extension) atomically; refuse to overwrite."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise InvalidInput("sample.options", f"{out}: the output must end in .csv or .parquet",
                           hint="e.g. --out synthetic.csv")
    if out.exists():
        raise InvalidInput("output.exists", f"{out}: already exists", hint="choose a new --out path")
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _target_name(model: Model) -> str:
    if model.codec.target is None:
        raise InvalidInput("sample.options", "this model has no target column to condition on",
                           hint="drop --where/--ratio; the model samples whole rows only")
    return model.codec.target.name


def _class_index(model: Model, where: Mapping[str, str]) -> int:
    name = _target_name(model)
    if len(where) != 1 or name not in where:
        raise InvalidInput("sample.options", f"--where: the generator is conditioned only on the target {name!r}",
                           hint=f"write --where {name}=CLASS")
    wanted = str(where[name]).strip()
    labels = [str(c) for c in model.codec.classes]
    if wanted not in labels:
        raise InvalidInput("sample.options", f"--where: {wanted!r} is not a class of {name!r}",
                           hint=f"classes (from the schema): {', '.join(labels)}")
    return labels.index(wanted)
