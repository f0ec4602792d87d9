"""The generator's heads that read the codes drawn before them (release/generator.py rule 6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hgan.release.generator import Generator, GeneratorConfig, stratified_uniforms

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


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("order", ORDERS)
def test_draws_follow_the_chain_of_the_teacher_forced_heads(order, stratified):
    """The frequency of each code triple drawn at one latent is the product of the heads'
    probabilities given the codes drawn before them (within sampling error), whether drawn
    independently (``draw``) or stratified over the rows (the fit's ``forced_draw``)."""
    generator = context_generator(seed=1, order=order)
    n = 40_000
    z, y = torch.randn(1, 4).expand(n, -1), torch.ones(n, dtype=torch.int64)
    rng = torch.Generator().manual_seed(0)
    codes = generator.forced_draw(z, y, rng, strata=[slice(0, n)])[1] if stratified else generator.draw(z, y, rng)[0]
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


def test_stratified_uniforms_put_one_point_in_each_stratum_of_a_slice():
    u = stratified_uniforms([slice(0, 5), slice(5, 12)], 12, 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert ((u >= 0) & (u < 1)).all()
    for rows in (slice(0, 5), slice(5, 12)):
        n = rows.stop - rows.start
        strata = torch.floor(u[rows] * n).long()
        assert all(sorted(strata[:, c].tolist()) == list(range(n)) for c in range(3))


def test_a_stratified_draw_keeps_each_rows_law_and_steadies_the_counts():
    """Over rows with one latent, the first head's code counts come within 1 of their
    expectation when stratified (independent draws: a binomial spread); across repeated
    draws, any one row's code still has the head's law."""
    generator = context_generator(seed=3, order=(2, 0, 1))
    n, first = 400, 2
    z, y = torch.randn(1, 4).expand(n, -1), torch.zeros(n, dtype=torch.int64)
    rng = torch.Generator().manual_seed(1)
    logits, codes = generator.forced_draw(z, y, rng, strata=[slice(0, n)])
    assert torch.allclose(logits, generator(z, y, codes)[0], atol=1e-6)  # teacher forcing on these codes
    p = torch.softmax(logits[0, sum(SIZES[:first]):sum(SIZES[: first + 1])], dim=0).detach().numpy()
    expected = n * p
    stratified = np.bincount(codes[:, first].numpy(), minlength=SIZES[first])
    assert np.abs(stratified - expected).max() <= 1.0 + 1e-6
    spread = [np.abs(np.bincount(generator.draw(z, y, rng)[0][:, first].numpy(), minlength=SIZES[first])
                     - expected).max() for _ in range(20)]
    assert np.mean(spread) > 3.0  # independent draws: about sqrt(n p (1 - p)) ~ 8 rows
    rows, repeats = 6, 6000
    seen = np.zeros(SIZES[first])
    for _ in range(repeats):
        drawn = generator.forced_draw(z[:rows], y[:rows], rng, strata=[slice(0, rows)])[1]
        seen[drawn[4, first]] += 1
    assert np.abs(seen / repeats - p).max() < 4 * np.sqrt(0.25 / repeats)
