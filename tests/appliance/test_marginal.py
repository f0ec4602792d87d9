"""The marginal engine: mechanisms measured against theory, and the fitter against its targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hgan.appliance import marginal as M
from hgan.appliance.accounting import epsilon
from hgan.appliance.engine import TrainOptions, release_target_histogram
from hgan.release.codec import Codec
from hgan.release.generator import Generator, GeneratorConfig, sub_cells
from tests.conftest import mixed_frame, mixed_schema


def encoded(n=2000, seed=0):
    codec = Codec(mixed_schema())
    frame = mixed_frame(n, seed)
    codes, _ = codec.encode_codes(frame)
    return codec, codes, codec.encode_target(frame)


def encoded_with_offsets(n=2000, seed=0):
    codec = Codec(mixed_schema())
    codes, offsets = codec.encode_codes(mixed_frame(n, seed))
    return codec, codes, offsets


def test_selection_frequencies_match_the_exponential_mechanism():
    scores = np.array([0.0, 1.0, 2.0, 4.0])
    eps, draws = 1.0, 40_000
    rng = np.random.default_rng(0)
    counts = np.bincount([M.select(scores, eps, rng) for _ in range(draws)], minlength=4)
    expected = np.exp(eps * scores / 2) / np.exp(eps * scores / 2).sum()
    std = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(counts / draws - expected) < 5 * std)


def test_selection_among_the_least_measured_follows_the_mechanism_on_them_alone():
    scores, times = np.array([0.0, 1.0, 2.0, 4.0]), np.array([1, 0, 2, 0])
    eps, draws = 1.0, 20_000
    rng = np.random.default_rng(1)
    open_ = M.least_measured(times)
    counts = np.bincount([M.select(np.where(open_, scores, -np.inf), eps, rng) for _ in range(draws)], minlength=4)
    assert counts[0] == counts[2] == 0
    weights = np.exp(eps * scores[[1, 3]] / 2)
    share = weights[0] / weights.sum()
    assert abs(counts[1] / draws - share) < 5 * math.sqrt(share * (1 - share) / draws)
    assert M.least_measured(np.array([2, 2, 2])).all()  # all measured as often: all open again


def test_the_rounds_measure_no_candidate_twice_before_each_once_and_set_the_draw_order(tmp_path, monkeypatch):
    from hgan.appliance.train import train
    from hgan.release.model import load_model

    shorter_fits(monkeypatch)
    frame = mixed_frame(2000, 3)
    train(frame, mixed_schema(), out=tmp_path / "m", options=TrainOptions(epsilon=10.0, seed=0))
    model = load_model(tmp_path / "m")
    training = model.metadata["training"]
    codec = Codec(mixed_schema())
    rounds = training["measured"][len(codec.columns):]
    assert len(rounds) == training["rounds"] > 1
    assert len(set(rounds)) == len(rounds)
    # rule 8: the model draws its heads in the order of the rounds' selections
    index = {c.name: j for j, c in enumerate(codec.columns)}
    selected = [tuple(index[n] for n in name.split(" (")[0].split(" x ") if n in index) for name in rounds]
    order = model.generator.config.draw_order
    assert order == M.draw_order(len(codec.columns), selected) != tuple(range(len(codec.columns)))


def test_workload_noise_has_the_planned_sigma():
    codec, codes, y = encoded()
    budget = M.Budget(rho=0.05, rounds=5, n_features=len(codec.columns))
    residuals = []
    for seed in range(20):
        for j, m in enumerate(M.measure_workload(codes, y, codec, budget, np.random.default_rng(seed))):
            exact = M.Cells(codec, None).histogram(codes, y, (j, -1))
            residuals.append(m.noisy - exact)
    residuals = np.concatenate(residuals)
    assert residuals.size > 3000
    assert np.std(residuals) == pytest.approx(budget.workload_sigma, rel=0.06)
    assert abs(np.mean(residuals)) < 5 * budget.workload_sigma / math.sqrt(residuals.size)


def _independent_epsilon(events, delta):
    """RDP of Gaussian (count * a / 2 s^2) and exponential (count * a * e^2 / 8) events,
    converted with Balle et al. 2020 Thm 21, written out independently of the module."""
    orders = np.concatenate([np.linspace(1.01, 10, 500), np.arange(11, 2000)])
    rdp = np.zeros_like(orders)
    for e in events:
        if e.kind == "gaussian":
            rdp += e.count * orders / (2 * e.noise_multiplier**2)
        elif e.kind == "exponential":
            rdp += e.count * orders * e.epsilon**2 / 8
        else:
            raise AssertionError(e.kind)
    eps = rdp + np.log((orders - 1) / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)
    return float(eps.min())


@pytest.mark.parametrize("target", [0.5, 1.0, 3.5, 10.0])
def test_budget_composes_to_the_target_with_an_independent_accountant(target):
    codec, _, y = encoded()
    options = TrainOptions(epsilon=target, seed=0)
    start = release_target_histogram(y, codec.n_classes, options, np.random.default_rng(0))
    budget = M.plan_budget(options, start, len(codec.columns), codec.n_offsets)
    events = start.events + budget.events()
    assert bool(budget.n_offsets) == (target >= 3.5)  # 2000 rows: the within-bin histograms from 3.5 on
    within = ["gaussian"] if budget.n_offsets else []
    assert [e.kind for e in events] == ["gaussian", "gaussian", *within, "exponential", "gaussian"]
    ours = epsilon(events, start.delta)
    assert ours <= target
    assert ours == pytest.approx(target, rel=1e-3)  # the budget is spent, not wasted
    assert _independent_epsilon(events, start.delta) == pytest.approx(ours, rel=0.01)


def test_selection_score_has_sensitivity_one():
    codec, codes, y = encoded(500)
    cells = M.Cells(codec, 4)
    candidates = [c for c, _ in M.candidate_marginals(len(codec.columns), codec, cells)]
    rng = np.random.default_rng(1)
    model = [rng.dirichlet(np.ones(int(np.prod(cells.shape(c))))) for c in candidates]

    def scores(c, yy):
        exact = [cells.histogram(c, yy, m) for m in candidates]
        return M.selection_scores(exact, model, 500.0, 3.0)

    for removed in (0, 17, 499):
        keep = np.arange(500) != removed
        diff = np.abs(scores(codes, y) - scores(codes[keep], y[keep]))
        assert diff.max() <= 1.0 + 1e-9


def test_cells_merge_numeric_codes_and_keep_missing_apart():
    mapping = M._coarse_map(17, True, 4)  # 16 bins + missing
    assert mapping.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [4]
    assert M._coarse_map(3, False, 8).tolist() == [0, 1, 2]  # never more cells than values
    codec = Codec(mixed_schema())
    assert M.Cells(codec, 4).sizes == [4, 4, 4, 5, 5, 2, 4]  # categorical columns keep every category
    assert M.Cells(codec, None).sizes == codec.head_sizes
    codes, fine = np.array([[0, 2], [1, 0], [1, 2]]), M.Cells(codec, None)
    counts = fine.histogram(codes, np.array([1, 0, 1]), (0, 1, -1)).reshape(fine.shape((0, 1, -1)))
    assert counts[1, 2, 1] == 1 and counts[0, 2, 1] == 1 and counts.sum() == 3  # the last column fastest


def test_pair_resolution_rule_is_monotone_in_count_and_noise():
    # PAIR_SIGNAL 0.3: the codes (16 x 16 cells) need 256 x 0.3 x sigma rows
    assert M.pair_resolution(100_000, 1.0) is None
    assert M.pair_resolution(6_000, 18.0) is None      # 23 rows a cell >= 5.4
    assert M.pair_resolution(400, 8.0) == 8            # 1.6 < 2.4 at 16; 6.3 >= 2.4 at 8
    assert M.pair_resolution(400, 30.0) == 4           # 6.3 < 9 at 8; 25 >= 9 at 4
    assert M.pair_resolution(50, 60.0) == 2            # nothing fits: the coarsest
    assert [M.pair_resolution(1000, s) or 16 for s in (1.0, 16.0, 64.0, 256.0)] == [16, 8, 4, 2]
    # with fine columns (rule 6) a pair is judged at 32 bins, and may fall back to the coarse 16
    assert M.pair_resolution(3000, 18.0) is None                # 11.7 >= 5.4 at 16
    assert M.pair_resolution(3000, 18.0, 32) == 16              # 2.9 < 5.4 at 32
    assert M.pair_resolution(12_000, 18.0, 32) is None          # 11.7 >= 5.4 at 32


def noise_free_fitter(rows: int, seed: int, latent: int, hidden: tuple[int, ...], floored=None):
    """A fitter on ``rows`` hand-made rows and their workload measured without noise."""
    codec, codes, y = encoded(rows, seed=seed)
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent, hidden, codec.n_classes, tuple(codec.head_sizes),
                                          codec.n_offsets, "uniform"))
    budget = M.Budget(rho=M.NON_PRIVATE_RHO, rounds=1, n_features=len(codec.columns))
    measured = M.measure_workload(codes, y, codec, budget, np.random.default_rng(0))
    fitter = M.Fitter(generator, np.bincount(y) / len(y), float(len(y)), seed=0, floored=floored)
    return fitter, measured, len(y)


def test_a_category_with_a_negative_noisy_count_keeps_the_floor_share():
    """Rule 5: the fit follows a category's noisy count down to ~0 unless it is floored."""
    codec = Codec(mixed_schema())
    stage = [c.name for c in codec.features].index("stage")
    start = sum(codec.head_sizes[:stage])
    assert len(M.category_codes(codec)) == 2 + 3  # sex and stage; stage's missing code is not a category
    assert [start, start + 1, start + 2] == M.category_codes(codec)[-3:].tolist()
    shares = {}
    for floored in (None, M.category_codes(codec)):
        fitter, measured, n = noise_free_fitter(2000, seed=5, latent=16, hidden=(64,), floored=floored)
        counts = measured[stage].noisy.reshape(-1, codec.n_classes)
        counts[0] = -300.0  # the first category: a noisy count far below zero in every class
        fitter.fit(measured, 1200)
        expected = fitter.expected([((stage, -1), measured[stage].cells)])[0]
        shares[floored is None] = expected.reshape(-1, codec.n_classes).sum(1)[0]
    assert shares[True] < M.CATEGORY_FLOOR / 5
    assert shares[False] > 0.8 * M.CATEGORY_FLOOR


def test_fitter_matches_noise_free_marginals():
    fitter, measured, n = noise_free_fitter(3000, seed=2, latent=16, hidden=(64,))
    before = _tv(fitter, measured, n)
    fitter.fit(measured, 400)
    after = _tv(fitter, measured, n)
    assert after < 0.03 < before


def test_final_fit_anneals_the_learning_rate_and_a_later_fit_restarts_it():
    fitter, measured, _ = noise_free_fitter(500, seed=3, latent=8, hidden=(16,))
    rates = []
    step = fitter.optimizer.step

    def recording_step(*args, **kwargs):
        rates.append(fitter.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    fitter.optimizer.step = recording_step
    fitter.fit(measured, 50, anneal=True)
    assert rates[0] == pytest.approx(M.FIT_LR) and rates[-1] < 0.01 * M.FIT_LR
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # decays monotonically
    fitter.fit(measured, 3)
    assert rates[-3:] == [M.FIT_LR] * 3  # a fit without annealing runs at the full rate


def _tv(fitter, measured, n):
    return max(0.5 * np.abs(e - m.noisy / n).sum()
               for m, e in zip(measured, fitter.expected([(m.columns, m.cells) for m in measured])))


def test_moments_agree_with_histograms_of_drawn_rows():
    """The moment vector's slices are the marginals that ``Cells.histogram`` counts, cell for
    cell, in the order asked for (marginals of one shape and resolution are computed together)."""
    codec = Codec(mixed_schema(), fine_columns=("marker", "creat"))
    frame = mixed_frame(500, seed=4)
    codes, y = codec.encode_codes(frame)[0], codec.encode_target(frame)
    order = np.argsort(y, kind="stable")  # the fitter's batches hold each class's rows together
    codes, y = codes[order], y[order]
    fine, coarse, halved = M.Cells(codec, None), M.Cells(codec, 4), M.Cells(codec, 16, fine_only=True)
    assert halved.sizes[2:5] == [16, 17, 17] and fine.sizes[2:5] == [32, 33, 17]
    marginals = [((0, -1), fine), ((1, 4), coarse), ((3, -1), fine), ((2, 5, -1), coarse), ((1, 4), fine),
                 ((0, 6), coarse), ((3, 6, -1), fine), ((1, 4), coarse), ((5, -1), fine), ((3, -1), halved),
                 ((2, 3), halved), ((2,), fine)]
    for order in [tuple(range(len(codec.columns))), (5, 2, 0, 6, 3, 1, 4)]:  # any draw order: the same layout
        moments = M.Moments(marginals, torch.device("cpu"), order)
        _assert_moments_are_histograms(moments, marginals, codes, y, codec)


def _assert_moments_are_histograms(moments, marginals, codes, y, codec):
    probs = torch.as_tensor(np.concatenate(
        [np.eye(n)[codes[:, j]] for j, n in enumerate(codec.head_sizes)], axis=1), dtype=torch.float32)
    ends = np.cumsum(np.bincount(y, minlength=codec.n_classes))
    rows = [slice(int(a), int(b)) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
    parts = moments.split(moments.compute(probs, rows).numpy())
    assert len(parts) == len(marginals)
    for (columns, cells), part in zip(marginals, parts):
        np.testing.assert_allclose(part * 500, cells.histogram(codes, y, columns), atol=1e-3)


def test_moments_of_heads_that_read_earlier_codes_are_unbiased():
    """Rule 7: with drawn codes for every feature but the last, a batch's moments estimate the
    generator's marginals (here against the histogram of another batch's draws); the product
    of the heads' probabilities alone would not."""
    codec = Codec(mixed_schema())
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8, (32,), codec.n_classes, tuple(codec.head_sizes), codec.n_offsets,
                                          "uniform", context_dim=8))
    with torch.no_grad():
        generator.context_logits.normal_(0, 2.0)
    order = tuple(reversed(range(len(codec.columns))))  # heads drawn last to first
    generator.reorder(order)
    cells = M.Cells(codec, None)
    marginals = [((0, 1), cells), ((1, 3, -1), cells), ((3,), cells), ((4, 2), cells)]
    moments = M.Moments(marginals, torch.device("cpu"), order)
    fitter = M.Fitter(generator, np.array([0.6, 0.4]), 1.0, seed=0)
    n = 40_000
    with torch.no_grad():
        probs, rows, drawn = fitter._batch(n)
        estimate, naive = moments.compute(probs, rows, drawn), moments.compute(probs, rows)
        _, other_rows, other = fitter._batch(n)
        histogram = moments.compute(other, other_rows, other)
    tolerance = 5 * np.sqrt(0.25 / n)
    assert (estimate - histogram).abs().max() < tolerance < (naive - histogram).abs().max()
    with pytest.raises(ValueError, match="distinct features"):
        M.Moments([((3, 3), cells)], torch.device("cpu"), order)


@pytest.mark.parametrize("context_dim", [0, 8])
def test_the_selection_s_expected_marginals_are_the_moments_of_the_same_batch(context_dim):
    """``Fitter.expected`` (one product per class over every cell) gives what ``Moments`` gives
    on the same batch, at every resolution, for features in any order and any draw order."""
    codec = Codec(mixed_schema(), fine_columns=("marker", "creat"))
    fine, coarse, halved = M.Cells(codec, None), M.Cells(codec, 4), M.Cells(codec, 16, fine_only=True)
    marginals = [((0, -1), fine), ((1, 4), coarse), ((4, 1, -1), coarse), ((2, 5, -1), fine), ((3,), fine),
                 ((6, 0), halved), ((2, 3, -1), halved), ((5, -1), coarse)]
    torch.manual_seed(1)
    generator = Generator(GeneratorConfig(8, (32,), codec.n_classes, tuple(codec.head_sizes), codec.n_offsets,
                                          "uniform", context_dim=context_dim))
    if context_dim:
        with torch.no_grad():
            generator.context_logits.normal_(0, 2.0)
    orders = [tuple(range(len(codec.columns)))] + ([(5, 2, 0, 6, 3, 1, 4)] if context_dim else [])
    for order in orders:
        if context_dim:
            generator.reorder(order)
        expected = M.Fitter(generator, np.array([0.6, 0.4]), 1.0, seed=3).expected(marginals)
        same_batch = M.Fitter(generator, np.array([0.6, 0.4]), 1.0, seed=3)._batch(4 * M.FIT_BATCH)
        moments = M.Moments(marginals, torch.device("cpu"), order)
        with torch.no_grad():
            reference = moments.split(moments.compute(*same_batch).numpy())
        for columns_cells, got, want in zip(marginals, expected, reference):
            assert got.shape == want.shape, columns_cells[0]
            np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="one or two features"):
        M.Fitter(generator, np.array([0.6, 0.4]), 1.0, seed=3).expected([((0, 1, 2), fine)])


def test_a_sub_marginal_sums_out_the_feature_drawn_last_and_its_noise_variance():
    codec = Codec(mixed_schema())
    cells = M.Cells(codec, 4)
    codes, y = codec.encode_codes(mixed_frame(300, seed=1))[0], codec.encode_target(mixed_frame(300, seed=1))
    schema_order, reversed_order = tuple(range(7)), tuple(range(6, -1, -1))
    for columns, order, sub, summed in [((1, 4, -1), schema_order, (1, -1), 4), ((0, 5), schema_order, (0,), 5),
                                        ((1, 4, -1), reversed_order, (4, -1), 1)]:
        exact = cells.histogram(codes, y, columns)
        sigma = np.arange(exact.size) % 3 + 1.0
        derived = M.sub_marginal(M.Marginal(columns, cells, exact, sigma), order)
        assert derived.columns == sub
        np.testing.assert_allclose(derived.noisy, cells.histogram(codes, y, sub))
        assert derived.sigma.shape == derived.noisy.shape and (derived.sigma >= np.sqrt(cells.sizes[summed])).all()
    one = M.Marginal((2, -1), cells, cells.histogram(codes, y, (2, -1)), 1.0)
    assert M.sub_marginal(one, schema_order) is None
    pair = cells.histogram(codes, y, (0, 5))
    np.testing.assert_allclose(M.sub_marginal(M.Marginal((0, 5), cells, pair, 2.0), schema_order).sigma,
                               2.0 * np.sqrt(cells.sizes[5]))


def test_rule8_the_draw_order_places_each_feature_after_its_measured_neighbours():
    """Maximum cardinality search: a hub first, then its neighbours; a feature measured with two
    placed features before one measured with one; features never measured in a pair last."""
    assert M.draw_order(4, []) == M.draw_order(4, [(2, -1), (3,)]) == (0, 1, 2, 3)  # one feature: no edge
    assert M.draw_order(5, [(0, 3), (1, 3, -1), (3, 4)]) == (3, 0, 1, 4, 2)   # a star around 3
    assert M.draw_order(5, [(4, 1), (1, 0), (0, 4, -1), (0, 2)]) == (0, 1, 4, 2, 3)
    chain = M.draw_order(6, [(0, 5), (5, 2), (2, 4)])  # 0 - 5 - 2 - 4: ties go to the codec's order
    assert chain == (2, 5, 0, 4, 1, 3)


def test_a_table_with_many_rounds_takes_fewer_steps_per_round():
    assert M.steps_per_round(20) == M.steps_per_round(0) == M.FIT_STEPS_PER_ROUND  # the shipped tables: <= 48 rounds
    assert M.steps_per_round(92) == M.FIT_STEPS_ROUNDS // 92 < M.FIT_STEPS_PER_ROUND
    assert M.steps_per_round(10 * M.FIT_STEPS_ROUNDS) == 1


def test_a_single_feature_spends_everything_on_the_workload():
    budget = M.Budget(rho=0.1, rounds=M.rounds_rule(1, 3.5), n_features=1)
    assert budget.rounds == 0
    assert [e.purpose for e in budget.events()] == ["workload: (feature, target) marginals"]
    assert budget.workload_sigma == pytest.approx(math.sqrt(1 / (2 * 0.1)))
    assert M.candidate_marginals(1, Codec(mixed_schema()), M.Cells(Codec(mixed_schema()), None)) == []


def shorter_fits(monkeypatch) -> None:
    """Fits of a few hundred steps: enough for what the end-to-end tests check, a tenth of the time."""
    monkeypatch.setattr(M, "FIT_STEPS_PER_ROUND", 10)
    monkeypatch.setattr(M, "FIT_STEPS_FINAL", 300)


def test_training_a_one_feature_table_works_end_to_end(tmp_path, monkeypatch):
    from hgan.appliance.train import train
    from hgan.release.model import load_model
    from hgan.release.sample import sample
    from hgan.release.schema import Schema

    monkeypatch.setattr(M, "FIT_STEPS_FINAL", 50)
    raw = mixed_schema().to_dict()
    raw["columns"] = [c for c in raw["columns"] if c["name"] in ("sex", "death")]
    schema = Schema.from_dict(raw)
    result = train(mixed_frame(300)[["sex", "death"]], schema, out=tmp_path / "m",
                   options=TrainOptions(epsilon=1.0, seed=0))
    assert result.epsilon <= 1.0
    rows = sample(load_model(tmp_path / "m"), 200, seed=0)
    assert set(rows["sex"].unique()) <= {"F", "M"} and len(rows) == 200


def test_within_bin_histograms_have_the_planned_sigma_and_count_every_row_once():
    codec, codes, offsets = encoded_with_offsets()
    assert codec.n_offsets >= 2
    budget = M.Budget(rho=0.05, rounds=5, n_features=len(codec.columns), n_offsets=codec.n_offsets)
    residuals = []
    for seed in range(20):
        noisy = M.measure_within_bins(codes, offsets, codec, 4, budget.offset_sigma, np.random.default_rng(seed))
        for k, j in enumerate(codec.offset_heads):
            exact = np.zeros((codec.columns[j].n_codes, 4))
            np.add.at(exact, (codes[:, j], sub_cells(offsets[:, k], 4)), 1)
            assert exact.sum() == len(codes)  # sensitivity 1: each row sits in one cell
            residuals.append((noisy[k] - exact).ravel())
    residuals = np.concatenate(residuals)
    assert np.std(residuals) == pytest.approx(budget.offset_sigma, rel=0.06)
    assert abs(np.mean(residuals)) < 5 * budget.offset_sigma / math.sqrt(residuals.size)


def test_sub_cells_split_the_bin_evenly_and_keep_its_edges():
    offsets = np.array([-1.0, -0.51, -0.49, 0.0, 0.49, 0.51, 1.0])
    assert sub_cells(offsets, 4).tolist() == [0, 0, 1, 2, 2, 3, 3]


def test_offset_table_clamps_negative_counts_and_falls_back_to_uniform():
    noisy = [np.array([[3.0, -1.0, 1.0, 0.0], [-2.0, -1.0, 0.0, -5.0]]),
             np.array([[1.0, 1.0, 1.0, 1.0]] * 3)]
    table = M.offset_table(noisy)
    assert table.shape == (2, 3, 4)
    np.testing.assert_allclose(table[0, 0], [0.75, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(table[0, 1], [0.25] * 4)   # nothing positive: uniform
    np.testing.assert_allclose(table[0, 2], [0.25] * 4)   # padding of the shorter column
    np.testing.assert_allclose(table.sum(-1), 1.0)


def test_offset_resolution_rule_is_monotone_and_can_decline():
    # CELL_SIGNAL 2, 16 bins: 100000 / (16 x 16) = 390 rows >= 2 x 10
    assert M.offset_resolution(100_000, 10.0) == 16
    assert M.offset_resolution(2000, 10.0) == 4   # 2000 / 64 = 31 >= 20; 2000 / 128 = 15.6 < 20
    assert M.offset_resolution(300, 10.0) is None  # 300 / 32 = 9.4 < 20
    assert M.offset_resolution(5000, 2.0) >= M.offset_resolution(5000, 8.0)


def test_a_small_table_skips_the_within_bin_histograms_and_spends_their_share_elsewhere():
    codec, _, y = encoded(200)
    options = TrainOptions(epsilon=0.5, seed=0)
    start = release_target_histogram(y, codec.n_classes, options, np.random.default_rng(0))
    budget = M.plan_budget(options, start, len(codec.columns), codec.n_offsets)
    assert budget.n_offsets == 0
    assert "within-bin histograms" not in [e.purpose for e in budget.events()]
    assert epsilon(start.events + budget.events(), start.delta) == pytest.approx(0.5, rel=1e-3)


def test_a_trained_model_draws_offsets_from_its_within_bin_table(tmp_path, monkeypatch):
    """The released table is the one the engine measured, and sampling follows it."""
    from hgan.appliance.train import train
    from hgan.release.model import load_model

    shorter_fits(monkeypatch)

    codec = Codec(mixed_schema())
    frame = mixed_frame(3000, 5)
    train(frame, mixed_schema(), out=tmp_path / "m", options=TrainOptions(epsilon=10.0, seed=0))
    model = load_model(tmp_path / "m")
    config = model.generator.config
    assert config.offsets == "table" and list(config.offset_heads) == codec.offset_heads
    table = model.generator.offset_table.numpy()
    z = torch.randn(20_000, config.latent_dim)
    y = torch.zeros(20_000, dtype=torch.long)
    codes, offsets = model.generator.draw(z, y, torch.Generator().manual_seed(0))
    codes, offsets = codes.numpy(), offsets.numpy()
    shaped = []
    for k, head in enumerate(config.offset_heads):
        common = np.bincount(codes[:, head]).argmax()
        drawn = sub_cells(offsets[codes[:, head] == common, k], config.offset_cells)
        share = np.bincount(drawn, minlength=config.offset_cells) / len(drawn)
        expected = table[k, common]
        assert np.abs(share - expected).max() < 5 * np.sqrt(0.25 / len(drawn))
        shaped.append(not np.allclose(expected, 1 / config.offset_cells, atol=0.05))
    assert any(shaped)  # integer ages sit in some sub-cells only: the table is not uniform
    exact_codes, exact_offsets = codec.encode_codes(frame)
    for k, head in enumerate(config.offset_heads):  # a DP release, not the exact shares
        counts = np.zeros(table.shape[1:])
        np.add.at(counts, (exact_codes[:, head], sub_cells(exact_offsets[:, k], config.offset_cells)), 1)
        exact = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        assert not np.allclose(table[k][counts.sum(1) > 0], exact[counts.sum(1) > 0], atol=1e-4)


# -- fine columns (rule 6) -------------------------------------------------------------

def concentrated_frame(n=3000, seed=0):
    """``creat`` in 2-3 of its 16 bins (most rows near 1), the other binned columns spread."""
    frame = mixed_frame(n, seed)
    rng = np.random.default_rng(seed + 1)
    frame["creat"] = np.where(frame["creat"].isna(), np.nan, np.clip(rng.normal(1.0, 0.25, n), 0.2, 12.0))
    return frame


def exact_within(codec, frame, cells=4):
    codes, offsets = codec.encode_codes(frame)
    return M.measure_within_bins(codes, offsets, codec, cells, 0.0, np.random.default_rng(0))


def test_a_column_in_few_bins_is_fine_and_a_spread_one_is_not():
    codec, frame = Codec(mixed_schema()), concentrated_frame()
    within = exact_within(codec, frame)
    assert M.fine_columns(codec, within, len(frame), sigma=5.0) == ("creat",)
    assert M.fine_columns(codec, within, len(frame), sigma=500.0) == ()  # halved cells would be noise
    assert M.fine_columns(codec, exact_within(codec, mixed_frame(3000)), 3000, sigma=5.0) == ()


def test_the_fine_split_and_the_refined_offsets_are_the_fine_codecs_histograms():
    coarse, frame = Codec(mixed_schema()), concentrated_frame()
    fine = Codec(mixed_schema(), fine_columns=("creat",))
    k, j = coarse.offset_heads.index(3), 3  # creat
    h = exact_within(coarse, frame, cells=4)[k]
    codes, offsets = fine.encode_codes(frame)
    y = fine.encode_target(frame)
    split = M.fine_split(h, j, fine, sigma=2.0)
    np.testing.assert_array_equal(split.noisy, M.Cells(fine, None).histogram(codes, y, (j,)))
    assert split.sigma[:32].tolist() == [2.0 * math.sqrt(2)] * 32 and split.sigma[32] == 4.0
    direct = exact_within(fine, frame, cells=2)[k]                  # the fine bins' halves
    refined = M.refined(h)
    assert refined.shape == (33, 4)
    for half in (refined[:32, ::2], refined[:32, 1::2]):  # each half split in two equal sub-cells
        np.testing.assert_array_equal(half, direct[:32])   # (the missing row's offsets are never drawn)


def test_the_workload_of_a_fine_column_is_measured_at_its_coarse_bins():
    coarse, frame = Codec(mixed_schema()), concentrated_frame()
    fine = Codec(mixed_schema(), fine_columns=("creat",))
    budget = M.Budget(rho=1e9, rounds=0, n_features=len(fine.columns))  # noise std ~1e-4 rows
    got = M.measure_workload(*[fine.encode_codes(frame)[0], fine.encode_target(frame)], fine, budget,
                             np.random.default_rng(0))
    want = M.measure_workload(coarse.encode_codes(frame)[0], coarse.encode_target(frame), coarse, budget,
                              np.random.default_rng(0))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.noisy, b.noisy, atol=1e-2)


def test_training_makes_the_concentrated_column_fine_and_charges_nothing_for_it(tmp_path, monkeypatch):
    from hgan.appliance.train import train
    from hgan.release.model import load_model
    from hgan.release.sample import sample
    shorter_fits(monkeypatch)
    frame, options = concentrated_frame(3000), TrainOptions(engine="marginal", epsilon=3.0, seed=0)
    fine = train(frame, mixed_schema(), out=tmp_path / "fine", options=options)
    monkeypatch.setattr(M, "FINE_EFFECTIVE_BINS", 0.0)
    coarse = train(frame, mixed_schema(), out=tmp_path / "coarse", options=options)
    model = load_model(tmp_path / "fine")
    assert model.codec.fine_columns == ("creat",) and load_model(tmp_path / "coarse").codec.fine_columns == ()
    assert fine.events == coarse.events and fine.epsilon == coarse.epsilon <= 3.0
    rows = sample(model, 2000, seed=0)
    present = rows["creat"].dropna()
    assert present.between(0.2, 12.0).all() and abs(present.median() - 1.0) < 0.25


def test_candidates_holding_a_fine_column_come_again_at_the_coarse_bins():
    coarse, fine = Codec(mixed_schema()), Codec(mixed_schema(), fine_columns=("creat",))
    d, j = len(fine.columns), 3  # creat
    plain = [c for c, cells in M.candidate_marginals(d, coarse, M.Cells(coarse, None)) if cells.bins is None]
    both = [(c, cells) for c, cells in M.candidate_marginals(d, fine, M.Cells(fine, None))
            if cells.key != (M.COARSE_PAIR_BINS, False)]
    again = [(c, cells) for c, cells in both if cells.key == (16, True)]
    assert len(plain) == len(both) - len(again) == d * (d - 1)  # pairs and (pair, target) triples
    assert again and all(j in c for c, _ in again) and len(again) == 2 * (d - 1)
    assert all(cells.sizes[j] == 17 for _, cells in again)  # creat's 32 bins + missing, merged back to 16 + 1
    # at a resolution no coarser than COARSE_PAIR_BINS (a small table) nothing comes twice
    assert len(M.candidate_marginals(d, fine, M.Cells(fine, M.COARSE_PAIR_BINS))) == len(plain)


def test_candidates_come_again_at_coarse_cells_where_that_merges_a_number():
    """Rule 3: each candidate is offered at the coarse cells too, unless no column of it merges
    (grade's 4 codes, sex and stage stay as they are)."""
    codec = Codec(mixed_schema())
    d, names = len(codec.columns), [c.name for c in codec.columns]
    candidates = M.candidate_marginals(d, codec, M.Cells(codec, None))
    again = [c for c, cells in candidates if cells.key == (M.COARSE_PAIR_BINS, False)]
    merging = {names.index(n) for n in ("age", "marker", "creat", "count")}
    assert again == [c for c, cells in candidates if cells.bins is None and merging & set(c)]
    assert (names.index("grade"), names.index("sex")) not in again and len(again) < len(candidates) / 2


def test_a_strong_pair_of_numbers_scores_above_its_noise_only_at_the_coarse_cells():
    """Why rule 3 offers coarse cells: a strong dependence between two numbers, missed by an
    independent model, is worth measuring at 8 x 8 cells at a noise where 16 x 16 are not."""
    rng = np.random.default_rng(0)
    codec = Codec(mixed_schema())
    a, b = 0, 2  # age and marker, both 16 bins
    codes = np.zeros((3000, len(codec.columns)), dtype=np.int64)
    codes[:, a] = rng.integers(0, 16, 3000)
    codes[:, b] = np.clip(codes[:, a] + rng.integers(-1, 2, 3000), 0, 15)  # b follows a
    y = np.zeros(3000, dtype=np.int64)
    scores = {}
    for cells in (M.Cells(codec, None), M.Cells(codec, M.COARSE_PAIR_BINS)):
        exact = cells.histogram(codes, y, (a, b))
        independent = np.outer(cells.histogram(codes, y, (a,)), cells.histogram(codes, y, (b,))).ravel() / 3000**2
        scores[cells.bins] = M.selection_scores([exact], [independent], 3000.0, sigma=25.0)[0]
    assert scores[None] < 0 < scores[M.COARSE_PAIR_BINS]
