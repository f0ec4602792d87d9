"""DP-SGD (appliance/dpsgd.py): norms, clipping, noise scale, sampling, refusals.

Known answers come from a naive loop (one backward pass per row) and from
Opacus' materialised per-sample gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from hgan.appliance.dpsgd import BACKENDS, PrivateGradient, poisson_sample

N_CLASSES = 3


class TwoHeads(nn.Module):
    """An AC-GAN-like discriminator: shared trunk, a real/fake logit and class logits."""

    def __init__(self, width: int = 6, hidden: int = 8, shared: bool = False) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.ReLU())
        self.real = nn.Linear(hidden, 1)
        self.classes = nn.Linear(hidden, N_CLASSES)
        self.shared = shared  # run trunk[2] twice: a layer called twice in one pass

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        if self.shared:
            h = torch.tanh(self.trunk[2](h))
        return self.real(h).squeeze(1), self.classes(h)


def composite_loss(x: torch.Tensor, y: torch.Tensor):
    """Per-sample BCE-with-logits (real) + cross-entropy (class), as the AC-GAN's."""
    def loss(m: nn.Module) -> torch.Tensor:
        logit, class_logits = m(x)
        bce = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit), reduction="none")
        return bce + F.cross_entropy(class_logits, y, reduction="none")
    return loss


def make_case(seed: int = 0, batch: int = 12, shared: bool = False):
    torch.manual_seed(seed)
    model = TwoHeads(shared=shared)
    x = torch.randn(batch, 6) * torch.linspace(0.2, 4.0, batch)[:, None]  # a spread of norms
    y = torch.randint(0, N_CLASSES, (batch,))
    return model, x, y


def naive_per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[list[torch.Tensor]]:
    """One backward pass per row."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [list(torch.autograd.grad(composite_loss(x[i:i + 1], y[i:i + 1])(model).sum(), params))
            for i in range(len(x))]


def flat_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads]).norm()


def naive_clipped_mean(model, x, y, clip: float, expected_batch: float) -> list[torch.Tensor]:
    per_sample = naive_per_sample_grads(model, x, y)
    total = [torch.zeros_like(p) for p in model.parameters()]
    for grads in per_sample:
        factor = min(1.0, clip / (float(flat_norm(grads)) + 1e-6))
        total = [t + factor * g for t, g in zip(total, grads)]
    return [t / expected_batch for t in total]


def private(model: nn.Module, backend: str = "ghost", *, clip: float = 1.0, sigma: float = 0.0,
            expected_batch: float = 10.0, seed: int = 0) -> PrivateGradient:
    return PrivateGradient(model, max_grad_norm=clip, noise_multiplier=sigma, expected_batch_size=expected_batch,
                           generator=torch.Generator().manual_seed(seed), backend=backend)


def grads_of(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


# --- norms -----------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True], ids=["each-layer-once", "layer-called-twice"])
def test_ghost_norms_equal_opacus_and_naive_per_sample_norms(shared: bool) -> None:
    model, x, y = make_case(shared=shared)
    naive = torch.stack([flat_norm(g) for g in naive_per_sample_grads(model, x, y)])
    ghost = private(model, "ghost").accumulate(composite_loss(x, y))
    reference = private(model, "opacus").accumulate(composite_loss(x, y))
    assert ghost.shape == naive.shape == (len(x),)
    torch.testing.assert_close(ghost, naive, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(reference, naive, rtol=1e-4, atol=1e-6)


# --- clipping --------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_without_noise_the_gradient_is_the_clipped_sum_over_expected_batch_size(backend: str) -> None:
    model, x, y = make_case()
    norms = torch.stack([flat_norm(g) for g in naive_per_sample_grads(model, x, y)])
    ranked = norms.sort().values
    clip = float(ranked[5] + ranked[6]) / 2
    assert (norms < clip).sum() == 6 and (norms > clip).sum() == 6  # rows on both sides of C
    expected = naive_clipped_mean(model, x, y, clip, expected_batch=7.5)
    private(model, backend, clip=clip, expected_batch=7.5).accumulate(composite_loss(x, y))
    for got, want in zip(grads_of(model), expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_row_moves_the_summed_gradient_by_at_most_C(backend: str) -> None:
    model, x, y = make_case()
    outlier_x = x[:1] * 1e3
    outlier_y = (y[:1] + 1) % N_CLASSES
    clip, expected_batch = 0.5, 10.0

    def gradient(rows_x, rows_y):
        model.zero_grad(set_to_none=True)
        private(model, backend, clip=clip, expected_batch=expected_batch).accumulate(composite_loss(rows_x, rows_y))
        return torch.cat([g.reshape(-1) for g in grads_of(model)])

    without = gradient(x, y)
    with_outlier = gradient(torch.cat([x, outlier_x]), torch.cat([y, outlier_y]))
    moved = float((with_outlier - without).norm()) * expected_batch
    assert clip * 0.99 < moved <= clip * (1 + 1e-5)  # the outlier is clipped to exactly C


# --- noise -----------------------------------------------------------------------

def zero_loss(x: torch.Tensor):
    return lambda m: m(x)[0] * 0.0


@pytest.mark.parametrize("backend,batch", [("ghost", 0), ("ghost", 5), ("opacus", 5)])
def test_noise_has_std_sigma_times_C_per_coordinate(backend: str, batch: int) -> None:
    torch.manual_seed(1)
    model = TwoHeads(width=40, hidden=64)
    sigma, clip, expected_batch = 1.3, 0.7, 25.0
    dp = private(model, backend, clip=clip, sigma=sigma, expected_batch=expected_batch, seed=3)
    draws = []
    for _ in range(8):
        model.zero_grad(set_to_none=True)
        dp.accumulate(zero_loss(torch.randn(batch, 40)))
        draws.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]) * expected_batch)
    noise = torch.cat(draws).double().numpy()
    n, std = noise.size, sigma * clip
    assert n > 50_000
    assert abs(noise.mean()) < 5 * std / np.sqrt(n)
    assert abs(noise.std() / std - 1) < 5 / np.sqrt(2 * n)
    assert stats.kstest(noise / std, "norm").pvalue > 1e-4


def test_accumulate_adds_to_an_existing_gradient() -> None:
    model, x, y = make_case()
    expected = naive_clipped_mean(model, x, y, clip=1.0, expected_batch=10.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)
    private(model).accumulate(composite_loss(x, y))
    for got, want in zip(grads_of(model), expected):
        torch.testing.assert_close(got, want + 2.0)


def test_empty_batch_adds_noise_only_and_returns_no_norms() -> None:
    model, x, y = make_case()
    norms = private(model, sigma=1.0).accumulate(composite_loss(x[:0], y[:0]))
    assert norms.shape == (0,)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_every_parameter_gets_noise_even_without_gradient() -> None:
    model, x, y = make_case()
    only_real = lambda m: F.softplus(-m(x)[0])  # noqa: E731  the class head gets no gradient
    private(model, sigma=0.0).accumulate(only_real)
    assert torch.all(model.classes.weight.grad == 0)
    model.zero_grad(set_to_none=True)
    private(model, sigma=1.0).accumulate(only_real)
    assert torch.all(model.classes.weight.grad != 0)


# --- reproducibility and isolation --------------------------------------------------

def test_a_seeded_generator_gives_identical_results_twice() -> None:
    results = []
    for _ in range(2):
        model, x, y = make_case()
        rng = torch.Generator().manual_seed(42)
        idx = poisson_sample(len(x), 0.5, rng)
        dp = PrivateGradient(model, max_grad_norm=1.0, noise_multiplier=1.1, expected_batch_size=6.0, generator=rng)
        dp.accumulate(composite_loss(x[idx], y[idx]))
        results.append((idx, grads_of(model)))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ordinary_backward_passes_are_untouched_after_accumulate(backend: str) -> None:
    model, x, y = make_case()
    plain = lambda: torch.autograd.grad(composite_loss(x, y)(model).mean(), list(model.parameters()))  # noqa: E731
    before = plain()
    private(model, backend, sigma=1.0).accumulate(composite_loss(x, y))
    after = plain()
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    for sub in model.modules():
        assert not sub._forward_hooks and not sub._backward_hooks
        assert not hasattr(sub, "activations")
    for p in model.parameters():
        assert not hasattr(p, "grad_sample")


# --- refusals --------------------------------------------------------------------

@pytest.mark.parametrize("layer", [nn.BatchNorm1d(8), nn.BatchNorm1d(8, affine=False), nn.LayerNorm(8)],
                         ids=["batchnorm", "batchnorm-no-affine", "layernorm"])
def test_a_normalisation_layer_is_refused(layer: nn.Module) -> None:
    model = nn.Sequential(nn.Linear(6, 8), layer, nn.ReLU(), nn.Linear(8, 1))
    with pytest.raises(TypeError, match=type(layer).__name__):
        private(model)


def test_dropout_and_activations_are_accepted() -> None:
    private(nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Dropout(0.1), nn.Linear(8, 1)))


class InputChangedInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(6, 8), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x))
        out = self.second(h)
        h.mul_(2.0)  # the second layer's recorded input changes after the call
        return out.squeeze(1) + h.sum(1)


@pytest.mark.parametrize("model", [nn.Sequential(nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 1)),
                                   InputChangedInPlace()], ids=["output", "input"])
def test_a_linear_input_or_output_changed_in_place_is_refused_by_ghost_norms(model: nn.Module) -> None:
    with pytest.raises(RuntimeError, match="in place"):
        private(model).accumulate(lambda m: m(torch.randn(4, 6)).reshape(-1))


# --- Poisson sampling ----------------------------------------------------------------

def test_poisson_batch_size_has_binomial_mean_and_variance() -> None:
    n, q, draws = 1000, 0.05, 4000
    rng = torch.Generator().manual_seed(7)
    counts = np.zeros(n)
    sizes = np.empty(draws)
    for k in range(draws):
        idx = poisson_sample(n, q, rng)
        assert idx.dtype == torch.int64
        sizes[k] = len(idx)
        counts[idx.numpy()] += 1
    mean, var = n * q, n * q * (1 - q)
    assert abs(sizes.mean() - mean) < 5 * np.sqrt(var / draws)
    assert abs(sizes.var(ddof=1) - var) < 5 * var * np.sqrt(2 / draws)
    # each row's inclusion count is Binomial(draws, q): chi-square over all rows
    chi2 = ((counts - draws * q) ** 2 / (draws * q * (1 - q))).sum()
    assert stats.chi2.sf(chi2, n) > 1e-4 and stats.chi2.cdf(chi2, n) > 1e-4


def test_poisson_rows_are_independent_and_empty_batches_happen() -> None:
    n, q, draws = 3, 0.5, 20_000
    rng = torch.Generator().manual_seed(11)
    patterns = np.zeros((draws, n), dtype=bool)
    for k in range(draws):
        patterns[k, poisson_sample(n, q, rng).numpy()] = True
    tol = lambda p: 5 * np.sqrt(p * (1 - p) / draws)  # noqa: E731
    assert abs(patterns[:, 0].mean() - q) < tol(q)
    assert abs((patterns[:, 0] & patterns[:, 1]).mean() - q * q) < tol(q * q)
    empty = (1 - q) ** n
    assert abs((~patterns.any(axis=1)).mean() - empty) < tol(empty)
    codes = patterns @ (1 << np.arange(n))
    assert stats.chisquare(np.bincount(codes, minlength=2**n)).pvalue > 1e-4


def test_poisson_sample_edge_rates() -> None:
    rng = torch.Generator().manual_seed(0)
    assert len(poisson_sample(50, 0.0, rng)) == 0
    assert torch.equal(poisson_sample(50, 1.0, rng), torch.arange(50))
    assert len(poisson_sample(0, 0.5, rng)) == 0
    with pytest.raises(ValueError):
        poisson_sample(10, 1.5, rng)


# --- device ----------------------------------------------------------------------

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda_ghost_matches_cpu_without_noise_and_draws_noise_on_device() -> None:
    model, x, y = make_case()
    expected = naive_clipped_mean(model, x, y, clip=1.0, expected_batch=10.0)
    model = model.cuda()
    dp = PrivateGradient(model, max_grad_norm=1.0, noise_multiplier=0.0, expected_batch_size=10.0,
                         generator=torch.Generator(device="cuda").manual_seed(0))
    dp.accumulate(composite_loss(x.cuda(), y.cuda()))
    for got, want in zip(grads_of(model), expected):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-6)
    rng = torch.Generator(device="cuda").manual_seed(0)
    assert poisson_sample(100, 0.5, rng).device.type == "cuda"
    noisy = PrivateGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_size=1.0, generator=rng)
    noisy.accumulate(composite_loss(x[:0].cuda(), y[:0].cuda()))
    with pytest.raises(RuntimeError, match="generator"):
        PrivateGradient(model, max_grad_norm=1.0, noise_multiplier=1.0, expected_batch_size=1.0,
                        generator=torch.Generator()).accumulate(composite_loss(x.cuda(), y.cuda()))
