"""``train()``: validated rows in, a model directory out.

Rules:
1. The schema must be reviewed (not a draft); options are checked before any
   row is read.
2. Rows are encoded by the schema alone (``release/codec.py``), except that the
   marginal engine may make some columns fine, a choice it makes from its own
   DP measurements (``appliance/marginal.py`` rule 6); the model records it.
3. The private rows are read only by the engine's DP mechanisms, all listed as
   privacy events: the target histogram first (``appliance/engine.py``), then
   the engine's own (``appliance/marginal.py`` or ``appliance/gan.py``).
4. The reported epsilon is the composition of every listed event by one RDP
   accountant, and is at most the target.
5. The model directory holds no exact count of the data (``release/model.py``
   rule 6); the exact row count is returned to the operator only.
6. ``dp=False`` lists no events and is marked non-private everywhere.
"""

from __future__ import annotations

import platform
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import opacus
import pandas as pd
import torch

import hgan
from hgan.appliance import gan, marginal
from hgan.appliance.accounting import ACCOUNTANT, epsilon
from hgan.appliance.engine import Progress, TrainOptions, release_target_histogram
from hgan.release.codec import Codec
from hgan.release.errors import InvalidInput
from hgan.release.model import write_model
from hgan.release.schema import Schema

@dataclass(frozen=True)
class TrainResult:
    """What ``train`` did. ``rows`` is the exact count: operator-only, never in the model.

    ``noise_multiplier``, ``sample_rate``, ``steps`` and ``max_grad_norm`` are
    the GAN engine's DP-SGD figures (None for the marginal engine).
    """

    model_dir: str
    engine: str
    private: bool
    epsilon: float | None
    delta: float | None
    accountant: str | None
    events: list[dict] = field(default_factory=list)
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    max_grad_norm: float | None = None
    epochs: int | None = None
    rows: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def require_reviewed(schema: Schema) -> None:
    """Refuse a schema still marked ``draft = true`` (schema rule 7)."""
    if schema.draft:
        raise InvalidInput("schema.draft", f"{schema.source}: is an unreviewed draft (draft = true)",
                           hint="review every bound and category against public knowledge, "
                                "then delete the line `draft = true`")


def train(frame: pd.DataFrame, schema: Schema, *, out: str | Path, options: TrainOptions,
          progress: Progress | None = None) -> TrainResult:
    """Train a generator on validated rows and write the model directory."""
    options.check()
    require_reviewed(schema)
    started = time.perf_counter()
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    torch.manual_seed(seed)
    codec = Codec(schema)
    if not codec.columns:
        raise InvalidInput("schema.invalid", f"{schema.source}: no column has role \"feature\"",
                           hint="a generator needs at least one feature besides the target")
    y = codec.encode_target(frame)
    start = release_target_histogram(y, codec.n_classes, options, np.random.default_rng(seed))
    loop_started = time.perf_counter()
    if options.engine == "gan":
        result = gan.fit(codec.to_vectors(*codec.encode_codes(frame)), y, codec, options, start, seed=seed,
                         progress=progress)
    else:
        result = marginal.fit(frame, y, codec, options, start, seed=seed, progress=progress)
    loop_seconds = time.perf_counter() - loop_started
    events = start.events + result.events
    spent = round(epsilon(events, start.delta), 6) if options.dp else None
    privacy = {"private": options.dp, "epsilon": spent, "delta": start.delta,
               "accountant": ACCOUNTANT if options.dp else None,
               "events": [e.to_dict() for e in events], "seeded": options.seed is not None}
    write_model(out, generator=result.generator, codec=result.codec, class_prior=result.class_prior,
                privacy=privacy, engine=result.details["engine"], training=_training_block(options, result.details),
                versions=_versions())
    d = result.details
    return TrainResult(
        model_dir=str(out), engine=options.engine, private=options.dp, epsilon=spent, delta=start.delta,
        accountant=privacy["accountant"], events=privacy["events"],
        noise_multiplier=d.get("noise_multiplier"), sample_rate=d.get("sample_rate"), steps=d.get("steps"),
        max_grad_norm=d.get("max_grad_norm"), epochs=d.get("epochs"), rows=len(frame),
        seconds=round(time.perf_counter() - started, 2), loop_seconds=round(loop_seconds, 3))


def _training_block(options: TrainOptions, details: dict) -> dict:
    return {"latent_dim": options.latent_dim, **details}


def _versions() -> dict:
    return {"hgan": hgan.__version__, "torch": torch.__version__, "opacus": opacus.__version__,
            "numpy": np.__version__, "python": platform.python_version()}
