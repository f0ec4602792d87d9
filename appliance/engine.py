"""What every training engine takes and returns, and the release they share.

Rules:
1. Every engine starts from the same first release: the target histogram with
   Gaussian noise (``release_target_histogram``). It gives the DP row count
   that sets the default delta and any size the engine needs; the exact count
   is never used to set anything.
2. An engine returns an ``EngineResult``: the generator, the DP class prior,
   every privacy event after the histogram, and its public training figures.
   ``appliance/train.py`` composes the events and writes the model.
3. With ``dp=False`` there are no events; the model is marked non-private.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from hgan.appliance.accounting import PrivacyEvent
from hgan.appliance.dpsgd import BACKENDS
from hgan.release.codec import Codec
from hgan.release.errors import InvalidInput
from hgan.release.generator import Generator

ENGINES = ("marginal", "gan")


@dataclass(frozen=True)
class TrainOptions:
    """Public training options. ``epsilon`` is a target; None only with dp=False.

    ``epochs``, ``batch_size``, ``max_grad_norm``, ``lr`` and ``dp_backend``
    concern the GAN engine only.
    """

    engine: str = "marginal"
    epsilon: float | None = 3.0
    delta: float | None = None
    epochs: int = 20
    batch_size: int = 256
    max_grad_norm: float = 1.0
    latent_dim: int = 64
    hidden: tuple[int, ...] | None = None  # None: the engine's default
    lr: float = 1e-3
    seed: int | None = None
    device: str = "cpu"
    dp: bool = True
    dp_backend: str = "ghost"  # "opacus": Opacus' per-sample hooks, for cross-checks and benchmarks

    def check(self) -> None:
        """Raise InvalidInput("train.options") naming the first bad option."""
        if self.engine not in ENGINES:
            bad_option(f"--engine must be one of {', '.join(ENGINES)}", "e.g. --engine marginal")
        if self.dp and (self.epsilon is None or not 0.01 <= self.epsilon <= 100):
            bad_option("--epsilon must be between 0.01 and 100", "e.g. --epsilon 3")
        if self.delta is not None and not 0 < self.delta < 1e-3:
            bad_option("--delta must be in (0, 0.001)", "leave it out for the default")
        if not 1 <= self.epochs <= 10_000:
            bad_option("--epochs must be between 1 and 10000", "e.g. --epochs 20")
        if not 2 <= self.batch_size <= 100_000:
            bad_option("--batch-size must be between 2 and 100000", "e.g. --batch-size 256")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            bad_option(f"--device {self.device}: unknown device", "use cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            bad_option(f"--device {self.device}: no CUDA device is available", "use --device cpu")
        if self.dp_backend not in BACKENDS:
            bad_option(f"dp_backend must be one of {', '.join(BACKENDS)}", "leave it at the default")


@dataclass(frozen=True)
class ProgressReport:
    """Progress of a run: ``done`` of ``total`` epochs or rounds, epsilon spent so far."""

    phase: str
    done: int
    total: int
    epsilon: float | None
    detail: str = ""


Progress = Callable[[ProgressReport], None]


@dataclass(frozen=True)
class Start:
    """The target histogram release (rule 1) and what follows from it."""

    class_counts: np.ndarray       # noisy (DP) or exact (dp=False), clamped to >= 1
    delta: float | None
    events: list[PrivacyEvent]

    @property
    def n(self) -> float:
        return float(self.class_counts.sum())

    @property
    def prior(self) -> np.ndarray:
        return self.class_counts / self.class_counts.sum()


@dataclass(frozen=True)
class EngineResult:
    """What an engine produced (rule 2)."""

    generator: Generator
    class_prior: list[float]
    events: list[PrivacyEvent]
    details: dict[str, Any]
    codec: Codec  # the one the generator reads and writes rows through


def histogram_noise(epsilon_target: float) -> float:
    """Public rule for the target histogram's Gaussian noise (std, in rows).

    Large enough that the histogram costs a small share of the budget at
    epsilon >= 1, and grows as 1/epsilon below it.
    """
    return 25.0 / min(1.0, epsilon_target)


def default_delta(n_noisy: float) -> float:
    """1e-6, or lower for tables over 10,000 rows: always at most 0.01 / n."""
    return min(1e-6, 10.0 ** (-math.ceil(math.log10(max(n_noisy, 1.0))) - 2))


def release_target_histogram(y: np.ndarray, n_classes: int, options: TrainOptions,
                             rng: np.random.Generator) -> Start:
    """The first release (rule 1): class counts with Gaussian noise, then the delta."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    if not options.dp:
        return Start(counts, None, [])
    sigma = histogram_noise(options.epsilon)
    noisy = np.maximum(counts + rng.normal(0.0, sigma, n_classes), 1.0)
    n_noisy = float(noisy.sum())
    delta = options.delta if options.delta is not None else default_delta(n_noisy)
    if delta >= 1.0 / n_noisy:
        bad_option(f"--delta must be well below 1/n (n is about {n_noisy:.0f} by a DP count)",
                   "leave --delta out for the default")
    event = PrivacyEvent("gaussian", "target histogram", sigma, 1.0, 1)
    return Start(noisy, delta, [event])


def bad_option(message: str, hint: str) -> None:
    raise InvalidInput("train.options", message, hint=hint)
