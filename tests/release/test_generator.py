"""The generator's heads that read the codes drawn before them (release/generator.py rule 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hgan.release.generator import Generator, GeneratorConfig

SIZES = (3, 2, 4)


ORDERS = [(), (2, 0, 1)]  # the codec's order, and heads drawn in another


def context_generator(seed: int = 0, order: tuple[int, ...] = ()) -> Generator:
    """A small autoregressive generator whose read-outs are not zero (they start at zero)."""
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig(4, (8,), 2, SIZES, 0, "uniform", context_dim=5, draw_order=order))
    with torch.no_grad():
        generator.context_logits.normal_(0, 1.5)
        generator.code_embedding.weight.normal_(0, 1.5)
    return generator.eval()


def _log_probs(generator: Generator, z: torch.Tensor, y: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
    logits, _ = generator(z, y, codes)
    return [torch.log_softmax(part, dim=1) for part in logits.split(list(SIZES), dim=1)]


@pytest.mark.parametrize("order", ORDERS)
def test_a_head_reads_only_the_codes_drawn_before_it(order):
    generator = context_generator(order=order)
    position = np.argsort(generator.config.order)
    z, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    codes = torch.tensor([[0, 1, 2]] * 6)
    before = _log_probs(generator, z, y, codes)
    for column in range(len(SIZES)):
        changed = codes.clone()
        changed[:, column] = (changed[:, column] + 1) % SIZES[column]
        after = _log_probs(generator, z, y, changed)
        for head in range(len(SIZES)):
            same = torch.allclose(before[head], after[head])
            assert same == (position[head] <= position[column]), (column, head)


@pytest.mark.parametrize("order", ORDERS)
def test_draws_follow_the_chain_of_the_teacher_forced_heads(order):
    """The frequency of each code triple drawn at one latent is the product of the heads'
    probabilities given the codes drawn before them (within sampling error)."""
    generator = context_generator(seed=1, order=order)
    n = 40_000
    z, y = torch.randn(1, 4).expand(n, -1), torch.ones(n, dtype=torch.int64)
    codes, _ = generator.draw(z, y, torch.Generator().manual_seed(0))
    seen = np.bincount(np.ravel_multi_index(codes.numpy().T, SIZES), minlength=int(np.prod(SIZES))) / n
    every = torch.as_tensor(np.array(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES)).T)
    log_probs = _log_probs(generator, z[: len(every)], y[: len(every)], every)
    chain = torch.stack([lp.gather(1, every[:, [j]])[:, 0] for j, lp in enumerate(log_probs)]).sum(0).exp()
    assert chain.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert np.abs(seen - chain.detach().numpy()).max() < 4 * np.sqrt(0.25 / n)
    assert chain.max() > 3 * chain.min()  # the heads are far from uniform: the check has teeth


def test_forward_without_codes_is_refused_and_relaxed_rows_are_for_independent_heads():
    generator = context_generator()
    z, y = torch.randn(2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="pass codes"):
        generator(z, y)
    with pytest.raises(ValueError, match="context_dim = 0"):
        generator.relaxed(z, y)


def test_the_read_outs_start_at_zero_so_a_new_generator_has_independent_heads():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(4, (8,), 2, SIZES, 0, "uniform", context_dim=5))
    z, y = torch.randn(3, 4), torch.tensor([0, 1, 1])
    a = _log_probs(generator, z, y, torch.tensor([[0, 0, 0]] * 3))
    b = _log_probs(generator, z, y, torch.tensor([[2, 1, 3]] * 3))
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_reordering_keeps_the_parameters_and_changes_which_codes_a_head_reads():
    generator = context_generator()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    generator.reorder((2, 0, 1))
    assert generator.config.draw_order == (2, 0, 1)
    assert all(torch.equal(v, before[k]) for k, v in generator.state_dict().items())
    assert generator.earlier.tolist() == [[0, 0, 1], [1, 0, 1], [0, 0, 0]]  # head 2 first, then 0, then 1
    with pytest.raises(ValueError, match="every head once"):
        generator.reorder((0, 0, 1))


def test_a_forced_draw_is_the_draw_then_the_teacher_forced_logits_in_one_pass():
    generator = context_generator(seed=2, order=(2, 0, 1))
    z, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    logits, codes = generator.forced_draw(z, y, torch.Generator().manual_seed(5))
    drawn, _ = generator.draw(z, y, torch.Generator().manual_seed(5))
    assert torch.equal(codes, drawn)
    assert torch.allclose(logits, generator(z, y, drawn)[0], atol=1e-6)
    assert logits.requires_grad and not codes.requires_grad
