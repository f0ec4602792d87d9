"""The DP-SGD AC-GAN engine (the seed paper's method).

Beaulieu-Jones et al., "Privacy-preserving generative deep neural networks
support clinical data sharing" (Circ. Cardiovasc. Qual. Outcomes 2019): an
AC-GAN whose discriminator is trained with DP-SGD (Abadi et al. 2016).

Rules:
1. After the target histogram (``appliance/engine.py``), the private rows are
   read only by DP-SGD on the discriminator's loss on real rows: Poisson
   sampling at rate ``q``, per-sample clipping to ``C``, Gaussian noise
   ``sigma * C``, normalised by the public expected batch size.
2. ``q = min(1, batch_size / n_noisy)`` and ``steps = ceil(epochs / q)`` follow
   from public options and the DP row count; ``sigma`` is calibrated so that
   the composed epsilon of the histogram and DP-SGD is at most the target.
3. The discriminator's loss on generated rows and every generator update read
   no real row (post-processing): the generator learns only through the
   private discriminator.
4. No epoch or snapshot is selected with the data: the generator after the
   last step is the candidate.
5. ``dp=False`` trains the same model with the same batches, without clipping
   or noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hgan.appliance.accounting import PrivacyEvent, calibrate_noise_multiplier, epsilon
from hgan.appliance.dpsgd import PrivateGradient, poisson_sample
from hgan.appliance.engine import EngineResult, Progress, ProgressReport, Start, TrainOptions, bad_option
from hgan.release.codec import Codec
from hgan.release.generator import Generator, GeneratorConfig

ENGINE = "dpsgd-acgan"
HIDDEN = (256, 256)


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


def dpsgd_event(sigma: float, q: float, steps: int) -> PrivacyEvent:
    return PrivacyEvent("subsampled_gaussian", "discriminator DP-SGD", sigma, q, steps)


def fit(x: np.ndarray, y: np.ndarray, codec: Codec, options: TrainOptions, start: Start, *,
        seed: int, progress: Progress | None = None) -> EngineResult:
    """Train the AC-GAN on encoded rows ``x`` and classes ``y`` (rules 1-5)."""
    q = min(1.0, options.batch_size / start.n)
    steps = math.ceil(options.epochs / q)
    sigma = _calibrate(options, start, q, steps) if options.dp else 0.0
    device = torch.device(options.device)
    hidden = options.hidden or HIDDEN
    generator = Generator(GeneratorConfig(options.latent_dim, hidden, codec.n_classes,
                                          tuple(codec.head_sizes), codec.n_offsets)).to(device)
    disc = Discriminator(codec.width, hidden, codec.n_classes).to(device)

    def report(epoch: int, step: int, d_loss: float, g_loss: float) -> None:
        if progress:
            spent = epsilon(start.events + [dpsgd_event(sigma, q, step)], start.delta) if options.dp else None
            progress(ProgressReport("epoch", epoch, options.epochs, spent,
                                    f"step {step}/{steps} D(fake) {d_loss:.3f} G {g_loss:.3f}"))

    _train(generator, disc, torch.as_tensor(x, device=device), torch.as_tensor(y, device=device),
           q=q, n=start.n, steps=steps, sigma=sigma, prior=start.prior, options=options, seed=seed,
           report=report)
    events = [dpsgd_event(sigma, q, steps)] if options.dp else []
    details = {"engine": ENGINE, "noise_multiplier": sigma if options.dp else None, "sample_rate": q,
               "steps": steps, "max_grad_norm": options.max_grad_norm if options.dp else None,
               "epochs": options.epochs, "batch_size": options.batch_size, "lr": options.lr,
               "optimizer": "adam(0.5, 0.9)", "selection": "last step (no data-dependent choice)"}
    return EngineResult(generator.cpu(), list(start.prior), events, details, codec)


def _calibrate(options: TrainOptions, start: Start, q: float, steps: int) -> float:
    try:
        return calibrate_noise_multiplier(target_epsilon=options.epsilon, delta=start.delta, sample_rate=q,
                                          steps=steps, fixed_events=start.events)
    except ValueError as exc:
        bad_option(f"--epsilon {options.epsilon} cannot be met with these options ({exc})",
                   "raise --epsilon or lower --epochs")
        raise


def _train(generator: Generator, disc: Discriminator, x_real: torch.Tensor, y_real: torch.Tensor, *,
           q: float, n: float, steps: int, sigma: float, prior: np.ndarray, options: TrainOptions,
           seed: int, report: Callable[[int, int, float, float], None]) -> None:
    """Alternate one discriminator and one generator step, ``steps`` times."""
    device = x_real.device
    rng = torch.Generator(device=device).manual_seed(seed)
    opt_g = torch.optim.Adam(generator.parameters(), lr=options.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=options.lr, betas=(0.5, 0.9))
    batch = q * n  # the public expected batch size
    private = PrivateGradient(disc, max_grad_norm=options.max_grad_norm, noise_multiplier=sigma,
                              expected_batch_size=batch, generator=rng,
                              backend=options.dp_backend) if options.dp else None
    class_prior = torch.as_tensor(prior, dtype=torch.float32, device=device)
    n_fake = max(1, round(batch))
    epoch_ends = {round(e * steps / options.epochs): e for e in range(1, options.epochs + 1)}
    d_losses, g_losses = [], []
    for step in range(1, steps + 1):
        idx = poisson_sample(len(x_real), q, rng, device=device)
        y_fake = torch.multinomial(class_prior, n_fake, replacement=True)
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
            report(epoch_ends[step], step, float(torch.stack(d_losses).mean()),
                   float(torch.stack(g_losses).mean()))
            d_losses, g_losses = [], []
