"""The DP-SGD AC-GAN training engine (the seed paper's method).

Beaulieu-Jones et al., "Privacy-preserving generative deep neural networks
support clinical data sharing" (Circ. Cardiovasc. Qual. Outcomes 2019): an
AC-GAN whose discriminator is trained with DP-SGD (Abadi et al. 2016).

Rules:
1. The private rows are read by exactly two mechanisms, each a privacy event
   composed by one accountant (``appliance/accounting.py``):
   a. the target histogram with Gaussian noise (L2 sensitivity 1 under
      add/remove of one row), giving the DP class prior and the noisy row
      count ``n_noisy``; the exact count is never used to set anything;
   b. DP-SGD on the discriminator's loss on real rows: Poisson sampling at rate
      ``q``, per-sample clipping to ``C``, Gaussian noise ``sigma * C``,
      normalised by the public expected batch size.
2. Everything else is a function of the schema, the public options and DP
   outputs: ``q = min(1, batch_size / n_noisy)``, ``steps = ceil(epochs / q)``,
   the default delta, and ``sigma``, calibrated so that the composed epsilon of
   (a) and (b) is at most the target.
3. The discriminator's loss on generated rows and every generator update read
   no real row (post-processing): the generator learns only through the
   private discriminator.
4. No epoch or snapshot is selected with the data: the generator after the
   last step is the candidate.
5. ``dp=False`` trains the same model with the same batches, without clipping,
   noise or noisy counts; the model is marked non-private everywhere.
"""

from __future__ import annotations

import math
import platform
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import opacus
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

import hgan
from hgan.appliance.accounting import ACCOUNTANT, PrivacyEvent, calibrate_noise_multiplier, epsilon
from hgan.appliance.dpsgd import BACKENDS, PrivateGradient, poisson_sample
from hgan.release.codec import Codec
from hgan.release.errors import InvalidInput
from hgan.release.generator import Generator, GeneratorConfig
from hgan.release.model import write_model
from hgan.release.schema import Schema

ENGINE = "dpsgd-acgan"


def histogram_noise(epsilon_target: float) -> float:
    """Public rule for the target histogram's Gaussian noise (std, in rows).

    Large enough that the histogram costs a small share of the budget at
    epsilon >= 1, and grows as 1/epsilon below it.
    """
    return 25.0 / min(1.0, epsilon_target)


def default_delta(n_noisy: float) -> float:
    """1e-6, or lower for tables over 10,000 rows: always at most 0.01 / n."""
    return min(1e-6, 10.0 ** (-math.ceil(math.log10(max(n_noisy, 1.0))) - 2))


@dataclass(frozen=True)
class TrainOptions:
    """Public training options. ``epsilon`` is a target; None only with dp=False."""

    epsilon: float | None = 3.0
    delta: float | None = None
    epochs: int = 20
    batch_size: int = 256
    max_grad_norm: float = 1.0
    latent_dim: int = 64
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 1e-3
    seed: int | None = None
    device: str = "cpu"
    dp: bool = True
    dp_backend: str = "ghost"  # "opacus": Opacus' per-sample hooks, for cross-checks and benchmarks

    def check(self) -> None:
        """Raise InvalidInput("train.options") naming the first bad option."""
        if self.dp and (self.epsilon is None or not 0.01 <= self.epsilon <= 100):
            _bad_option("--epsilon must be between 0.01 and 100", "e.g. --epsilon 3")
        if self.delta is not None and not 0 < self.delta < 1e-3:
            _bad_option("--delta must be in (0, 0.001)", "leave it out for the default")
        if not 1 <= self.epochs <= 10_000:
            _bad_option("--epochs must be between 1 and 10000", "e.g. --epochs 20")
        if not 2 <= self.batch_size <= 100_000:
            _bad_option("--batch-size must be between 2 and 100000", "e.g. --batch-size 256")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            _bad_option(f"--device {self.device}: no CUDA device is available", "use --device cpu")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            _bad_option(f"--device {self.device}: unknown device", "use cpu or cuda")
        if self.dp_backend not in BACKENDS:
            _bad_option(f"dp_backend must be one of {', '.join(BACKENDS)}", "leave it at the default")


@dataclass(frozen=True)
class EpochReport:
    """Progress after one epoch (what the CLI's progress bar shows)."""

    epoch: int
    epochs: int
    steps: int
    total_steps: int
    epsilon: float | None
    d_loss: float
    g_loss: float


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` did. ``rows`` is the exact count: operator-only, never in the model."""

    model_dir: str
    private: bool
    epsilon: float | None
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float
    steps: int
    max_grad_norm: float | None
    accountant: str | None
    events: list[dict] = field(default_factory=list)
    epochs: int = 0
    rows: int = 0
    seconds: float = 0.0
    loop_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class Discriminator(nn.Module):
    """AC-GAN discriminator: a shared trunk, a real/fake logit and class logits.

    Only ``nn.Linear`` layers carry parameters, as DP-SGD's per-sample norms
    (``appliance/dpsgd.py``) require.
    """

    def __init__(self, width: int, hidden: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.real = nn.Linear(width, 1)
        self.classes = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.real(h).squeeze(1), self.classes(h)


def acgan_loss(d: Discriminator, x: torch.Tensor, y: torch.Tensor, is_real: bool) -> torch.Tensor:
    """Per-sample AC-GAN loss: source (real/fake) + auxiliary class terms."""
    logit, class_logits = d(x)
    source = F.binary_cross_entropy_with_logits(
        logit, torch.full_like(logit, 1.0 if is_real else 0.0), reduction="none")
    return source + F.cross_entropy(class_logits, y, reduction="none")


def require_reviewed(schema: Schema) -> None:
    """Refuse a schema still marked ``draft = true`` (schema rule 7)."""
    if schema.draft:
        raise InvalidInput("schema.draft", f"{schema.source}: is an unreviewed draft (draft = true)",
                           hint="review every bound and category against public knowledge, "
                                "then delete the line `draft = true`")


def train(frame: pd.DataFrame, schema: Schema, *, out: str | Path, options: TrainOptions,
          progress: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Train a generator on validated rows and write the model directory."""
    options.check()
    require_reviewed(schema)
    started = time.perf_counter()
    seed = options.seed if options.seed is not None else secrets.randbits(63)
    torch.manual_seed(seed)
    device = torch.device(options.device)
    codec = Codec(schema)
    x_np, y_np = codec.encode(frame)
    x_real = torch.as_tensor(x_np, device=device)
    y_real = torch.as_tensor(y_np, device=device)
    noise_rng = torch.Generator(device=device).manual_seed(seed)

    class_counts = np.bincount(y_np, minlength=codec.n_classes).astype(np.float64)
    plan = _privacy_plan(options, class_counts, noise_rng)
    generator = Generator(GeneratorConfig(options.latent_dim, options.hidden, codec.n_classes,
                                          tuple(codec.head_sizes), codec.n_offsets)).to(device)
    disc = Discriminator(codec.width, options.hidden, codec.n_classes).to(device)
    loop_started = time.perf_counter()
    _run_gan(generator, disc, x_real, y_real, plan, options, noise_rng, progress)
    loop_seconds = time.perf_counter() - loop_started

    privacy = plan.privacy_block(options)
    write_model(out, generator=generator.cpu(), schema=schema, class_prior=plan.class_prior,
                privacy=privacy, engine=ENGINE, training=_training_block(options, plan),
                versions=_versions())
    return TrainResult(
        model_dir=str(out), private=options.dp, epsilon=privacy["epsilon"], delta=privacy["delta"],
        noise_multiplier=privacy["noise_multiplier"], sample_rate=plan.sample_rate, steps=plan.steps,
        max_grad_norm=privacy["max_grad_norm"], accountant=privacy["accountant"],
        events=privacy["events"], epochs=options.epochs, rows=len(frame),
        seconds=round(time.perf_counter() - started, 2), loop_seconds=round(loop_seconds, 3))


@dataclass
class _Plan:
    """The privacy plan of one run: all derived from public options and DP outputs."""

    class_prior: list[float]
    n_noisy: float
    sample_rate: float
    steps: int
    delta: float | None
    noise_multiplier: float
    events: list[PrivacyEvent]

    def expected_batch_size(self) -> float:
        return self.sample_rate * self.n_noisy

    def epsilon_after(self, steps_done: int) -> float | None:
        if not self.events:
            return None
        done = self.events[:-1] + [_dpsgd_event(self.noise_multiplier, self.sample_rate, steps_done)]
        return epsilon(done, self.delta)

    def privacy_block(self, options: TrainOptions) -> dict:
        dp = bool(self.events)
        return {
            "private": dp,
            "epsilon": round(self.epsilon_after(self.steps), 6) if dp else None,
            "delta": self.delta,
            "accountant": ACCOUNTANT if dp else None,
            "events": [e.to_dict() for e in self.events],
            "noise_multiplier": self.noise_multiplier if dp else None,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "max_grad_norm": options.max_grad_norm if dp else None,
            "seeded": options.seed is not None,
        }


def _privacy_plan(options: TrainOptions, class_counts: np.ndarray, rng: torch.Generator) -> _Plan:
    """Release the target histogram with DP, then size and calibrate DP-SGD (rules 1-2)."""
    if not options.dp:
        n = float(class_counts.sum())
        q = min(1.0, options.batch_size / n)
        return _Plan(list(class_counts / n), n, q, math.ceil(options.epochs / q), None, 0.0, [])
    sigma_hist = histogram_noise(options.epsilon)
    noise = torch.randn(len(class_counts), generator=rng, dtype=torch.float64, device=rng.device)
    noisy = np.maximum(class_counts + sigma_hist * noise.cpu().numpy(), 1.0)
    n_noisy = float(noisy.sum())
    delta = options.delta if options.delta is not None else default_delta(n_noisy)
    if delta >= 1.0 / n_noisy:
        _bad_option(f"--delta must be well below 1/n (n is about {n_noisy:.0f} by a DP count)",
                    "leave --delta out for the default")
    q = min(1.0, options.batch_size / n_noisy)
    steps = math.ceil(options.epochs / q)
    hist = PrivacyEvent(kind="gaussian", purpose="target histogram", noise_multiplier=sigma_hist,
                        sample_rate=1.0, count=1)
    try:
        sigma = calibrate_noise_multiplier(target_epsilon=options.epsilon, delta=delta, sample_rate=q,
                                           steps=steps, fixed_events=[hist])
    except ValueError as exc:
        _bad_option(f"--epsilon {options.epsilon} cannot be met with these options ({exc})",
                    "raise --epsilon or lower --epochs")
    return _Plan(list(noisy / n_noisy), n_noisy, q, steps, delta, sigma,
                 [hist, _dpsgd_event(sigma, q, steps)])


def _dpsgd_event(sigma: float, q: float, steps: int) -> PrivacyEvent:
    return PrivacyEvent(kind="subsampled_gaussian", purpose="discriminator DP-SGD",
                        noise_multiplier=sigma, sample_rate=q, count=steps)


def _run_gan(generator: Generator, disc: Discriminator, x_real: torch.Tensor, y_real: torch.Tensor,
             plan: _Plan, options: TrainOptions, rng: torch.Generator,
             progress: Callable[[EpochReport], None] | None) -> None:
    """Alternate one discriminator and one generator step, ``plan.steps`` times."""
    device = x_real.device
    opt_g = torch.optim.Adam(generator.parameters(), lr=options.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=(0.5, 0.9))
    batch = plan.expected_batch_size()
    private = PrivateGradient(disc, max_grad_norm=options.max_grad_norm, noise_multiplier=plan.noise_multiplier,
                              expected_batch_size=batch, generator=rng,
                              backend=options.dp_backend) if options.dp else None
    prior = torch.as_tensor(plan.class_prior, dtype=torch.float32, device=device)
    n_fake = max(1, round(batch))
    epoch_ends = {round(e * plan.steps / options.epochs): e for e in range(1, options.epochs + 1)}
    d_losses, g_losses = [], []
    for step in range(1, plan.steps + 1):
        idx = poisson_sample(len(x_real), plan.sample_rate, rng, device=device)
        y_fake = torch.multinomial(prior, n_fake, replacement=True)
        z = torch.randn(n_fake, options.latent_dim, device=device)
        # discriminator: non-private term on generated rows, then the private term on real rows
        opt_d.zero_grad(set_to_none=True)
        fake = generator.relaxed(z, y_fake).detach()
        d_fake = acgan_loss(disc, fake, y_fake, is_real=False).mean()
        d_fake.backward()
        real_loss = lambda m: acgan_loss(m, x_real[idx], y_real[idx], is_real=True)  # noqa: E731
        if private is not None:
            private.accumulate(real_loss)
        else:
            (real_loss(disc).sum() / batch).backward()
        opt_d.step()
        # generator: through the discriminator, never through real rows
        opt_g.zero_grad(set_to_none=True)
        g_loss = acgan_loss(disc, generator.relaxed(z, y_fake), y_fake, is_real=True).mean()
        g_loss.backward()
        opt_g.step()
        d_losses.append(d_fake.detach())
        g_losses.append(g_loss.detach())
        if step in epoch_ends:
            if progress:
                progress(EpochReport(epoch_ends[step], options.epochs, step, plan.steps,
                                     plan.epsilon_after(step), float(torch.stack(d_losses).mean()),
                                     float(torch.stack(g_losses).mean())))
            d_losses, g_losses = [], []


def _training_block(options: TrainOptions, plan: _Plan) -> dict:
    return {"epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr,
            "latent_dim": options.latent_dim, "hidden": list(options.hidden),
            "optimizer": "adam(0.5, 0.9)", "selection": "last step (no data-dependent choice)"}


def _versions() -> dict:
    return {"hgan": hgan.__version__, "torch": torch.__version__, "opacus": opacus.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _bad_option(message: str, hint: str) -> None:
    raise InvalidInput("train.options", message, hint=hint)
