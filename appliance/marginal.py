"""Select-measure-generate: a conditional generator fitted to DP-measured marginals.

The family of GEM (Liu, Vietri, Wu, NeurIPS 2021) and AIM (McKenna et al.,
VLDB 2022): measure marginals of the private table with calibrated noise, then
fit a generator to the noisy marginals only.

Rules:
1. After the target histogram (``appliance/engine.py``), the private rows are
   read by exactly these mechanisms, each an event of the one accountant
   (``appliance/accounting.py``):
   a. the workload: every (feature, target) marginal at the coarse codes (a
      fine column's codes merged back in pairs, rule 6), in one Gaussian
      release (each marginal has L2 sensitivity 1 under add/remove of one row,
      so ``d`` marginals are ``d`` unit releases);
   b. the within-bin histograms, measured first: for every binned numeric
      column, its ``NUMERIC_BINS`` codes x ``cells`` equal sub-cells of each
      bin, in one Gaussian release (one unit-sensitivity histogram per
      column). Post-processed into the fine columns (rule 6) and the
      generator's ``offset_table`` (negative counts to 0, rows normalised), so
      numbers come out shaped like the data inside a bin, not uniform in it;
   c. ``rounds`` times: one marginal chosen by the exponential mechanism
      (score: L1 error of the current generator on it minus the expected
      noise, sensitivity 1) among the candidates measured the fewest times
      so far (``least_measured``: none twice before every one once; the set
      follows from earlier selections, which are released), then measured
      with the Gaussian mechanism. Re-picks wasted the rounds on marginals
      the generator did not fit any better for them: on flchain at epsilon
      10, 13 of 36 rounds went to kappa x flc.grp and lambda x flc.grp. A
      candidate is its columns at one resolution (rule 3): a pair measured at
      one stays open at the others. Closing them all (9d09649, reverted)
      raised flchain's detection AUC at every epsilon (0.788 to 0.867 at
      epsilon 1): its kappa / lambda / flc.grp block needs the repeats.
   The selected marginals are measured at the codec's codes, unless the table
   is too small for them (rule 3).
2. Budgets are fixed in advance by public rules: one zCDP-style scale ``rho``
   is split ``WORKLOAD_SHARE`` to (a), ``OFFSET_SHARE`` to (b) and the rest
   evenly over the rounds, ``SELECT_SHARE`` of each round to selection;
   ``rho`` is the largest whose composed epsilon (RDP accountant) meets the
   target.
3. ``rounds`` is a public rule of the number of features and epsilon. The
   sub-cells of (b) are a public rule of the noise and the target
   histogram's DP row count; (b) is skipped, and its share given to the
   rest, when the rule finds no resolution worth measuring. The cells of (c)
   are a public rule of the noise and the workload's DP row count: the
   codec's codes, or numeric codes merged into fewer cells on small tables.
   Each candidate of (c) is offered again at ``COARSE_PAIR_BINS`` cells per
   number, and the score, which subtracts the noise expected over the cells,
   picks the resolution worth measuring: at epsilon 1 no pair of two numbers
   at 16 x 16 cells scored above its noise (rotterdam: er x pgr, TVD 0.29,
   was never measured). The exact row count is never used.
4. The generator reads only noisy marginals: its training (and any choice
   made while training) is post-processing.
5. No category of a categorical feature is lost: the fit keeps each one's share
   of the generator's draws at >= ``CATEGORY_FLOOR`` (a hinge in the loss, post-
   processing). A noisy count of a rare category can come out <= 0 on a small
   table; fitted as is, the column collapsed onto one value (300 rotterdam rows,
   epsilon 0.5: hormon in 3 of 6 samples of the table).
6. Fine columns (post-processing of (b): no event of their own). A binned
   column whose rows sit in few bins (``fine_columns``) is encoded at
   ``FINE_BINS``, each bin halved: the codec written into the model says
   which. Its (feature, target) marginal stays at the coarse bins, so (a) has
   the same noise per cell; the split of each bin into its halves is the
   one-way marginal that (b) gives, and the selected marginals measure it
   with the other columns where rule 3 allows the codes (each candidate that
   holds a fine column is offered at the coarse bins too: the score weighs
   the finer cells' noise). On flchain (kappa,
   lambda and creatinine: most rows in 3-7 of 16 bins) this raised the
   other-column ratio (sex, mostly read from creatinine) from 0.77-0.84 to
   0.90-0.93; making every binned column fine was worse on rotterdam.
7. The generator is autoregressive given (z, y): each head reads the codes
   drawn before it (``CONTEXT_DIM``, ``release/generator.py`` rule 6). With
   heads independent given z the fit did not reach the pairs it had measured
   (on flchain the selection re-picked kappa x flc.grp, a group of
   kappa + lambda, round after round). A batch's expected marginal is then
   estimated from codes the generator drew (``Moments``): unbiased, but only
   the marginal's last head gets its gradient, so each measured marginal is
   also fitted with its last feature summed out (``sub_marginal``; its
   noise variance summed too). Without that, the first column's head
   learnt only from its own noisy (feature, target) marginal, not from the
   pairs that hold it (rotterdam, epsilon 1: one-way TVD 0.050 against 0.034
   with independent heads). All of it is post-processing.
8. The heads' draw order follows the selected marginals (``draw_order``,
   recomputed after each round; the generator keeps its parameters): a
   maximum cardinality search on the graph of the features measured
   together, so each feature is drawn after those it was measured with, a
   hub first. By rule 7 a head learns a measured pair only if it is drawn
   after the other feature: in the codec's order, flchain at epsilon 1
   measured kappa x flc.grp and lambda x flc.grp (flc.grp last), and lambda's
   head never learnt its dependence on kappa (kappa x lambda TVD 0.29 at 16x
   the rows; 0.14 with this rule). The selections are released outputs, so
   the order is post-processing; it is written into the model's
   architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from hgan.appliance.accounting import PrivacyEvent, calibrate_scale, epsilon
from hgan.appliance.engine import EngineResult, Progress, ProgressReport, Start, TrainOptions, bad_option
from hgan.release.codec import FINE_BINS, NUMERIC_BINS, Codec
from hgan.release.generator import Generator, GeneratorConfig, sub_cells
from hgan.release.schema import CategoricalColumn, NumericColumn

WORKLOAD_SHARE = 0.3   # of rho, for the (feature, target) marginals
OFFSET_SHARE = 0.1     # of rho, for the within-bin histograms
OFFSET_CELLS = (4, 8, 16)     # candidate sub-cells per bin (rule 3); 2 halves of a bin were not worth their share
SELECT_SHARE = 0.1     # of each round's rho, for the exponential mechanism (AIM's split)
CELL_SIGNAL = 2.0      # sub-cells should hold >= CELL_SIGNAL x noise std rows on average
PAIR_BINS = (2, 4, 8, 16)  # numeric cells per column in (c) when the codec's codes are too fine (rule 3)
PAIR_SIGNAL = 0.3      # pair cells should hold >= PAIR_SIGNAL x noise std rows on average (see pair_resolution)
COARSE_PAIR_BINS = 8   # every candidate of (c) is offered again at this many cells per number (rule 3)
CATEGORY_FLOOR = 0.005  # each category's share of the draws, at least (rule 5)
FINE_EFFECTIVE_BINS = 8.0  # a column whose rows sit in <= this many bins (exp of the entropy) is fine (rule 6)
FIT_BATCH = 512
HIDDEN = (128, 128)
CONTEXT_DIM = 64     # each head reads the codes drawn before it (release/generator.py rule 6; rule 7 here)
FIT_STEPS_PER_ROUND = 60
FIT_STEPS_ROUNDS = 3000  # the rounds' fits share at most this many steps (a wide table has many rounds)
FIT_STEPS_FINAL = 1500
FIT_LR = 2e-3
FIT_LR_FLOOR = 1e-5    # the final fit's learning rate at its last step (cosine decay)


def rounds_rule(n_features: int, epsilon: float) -> int:
    """Number of select-measure rounds: d at epsilon <= 1, 2d at 2-4, up to 4d; none
    when there is no pair of features to select from."""
    if n_features < 2:
        return 0
    return n_features * (1 + min(3, int(math.log2(max(1.0, epsilon)))))


@dataclass(frozen=True)
class Budget:
    """Noise of every mechanism, from one scale ``rho`` (rule 2)."""

    rho: float
    rounds: int
    n_features: int
    n_offsets: int = 0     # binned numeric columns with a within-bin histogram; 0 skips (b)
    offset_cells: int = 0  # sub-cells per bin of (b), chosen by plan_budget

    @property
    def offset_share(self) -> float:
        return OFFSET_SHARE if self.n_offsets else 0.0

    @property
    def workload_share(self) -> float:
        return WORKLOAD_SHARE if self.rounds else 1.0 - self.offset_share

    @property
    def workload_sigma(self) -> float:
        return math.sqrt(self.n_features / (2 * self.workload_share * self.rho))

    @property
    def offset_sigma(self) -> float:
        """Noise of each within-bin histogram; infinite when (b) is skipped."""
        if not self.n_offsets:
            return math.inf
        return math.sqrt(self.n_offsets / (2 * self.offset_share * self.rho))

    @property
    def round_rho(self) -> float:
        return (1 - self.workload_share - self.offset_share) * self.rho / max(self.rounds, 1)

    @property
    def select_epsilon(self) -> float:
        return math.sqrt(8 * SELECT_SHARE * self.round_rho)

    @property
    def measure_sigma(self) -> float:
        """Noise of each selected marginal; infinite when there are no rounds."""
        if not self.rounds:
            return math.inf
        return math.sqrt(1 / (2 * (1 - SELECT_SHARE) * self.round_rho))

    def events(self, rounds_done: int | None = None) -> list[PrivacyEvent]:
        """The workload, the within-bin histograms and the rounds (all, or the first ``rounds_done``)."""
        rounds = self.rounds if rounds_done is None else rounds_done
        out = [PrivacyEvent("gaussian", "workload: (feature, target) marginals", self.workload_sigma,
                            1.0, self.n_features)]
        if self.n_offsets:
            out.append(PrivacyEvent("gaussian", "within-bin histograms", self.offset_sigma, 1.0, self.n_offsets))
        if self.rounds:
            out += [PrivacyEvent("exponential", "marginal selection", None, 1.0, rounds, epsilon=self.select_epsilon),
                    PrivacyEvent("gaussian", "selected marginals", self.measure_sigma, 1.0, rounds)]
        return out


NON_PRIVATE_RHO = 1e6  # dp=False: noise std ~ 1e-3 rows, selection ~ argmax


def plan_budget(options: TrainOptions, start: Start, n_features: int, n_offsets: int = 0) -> Budget:
    """The largest budget whose events, composed with the histogram's, meet the target (rule 2),
    with the within-bin resolution ``offset_resolution`` picks, or without the within-bin
    histograms when it finds none worth measuring (rule 3)."""
    if not options.dp:
        budget = Budget(NON_PRIVATE_RHO, rounds_rule(n_features, 100.0), n_features, n_offsets)
    else:
        budget = _calibrated(options, start, rounds_rule(n_features, options.epsilon), n_features, n_offsets)
    cells = offset_resolution(start.n, budget.offset_sigma) if n_offsets else None
    if cells:
        return replace(budget, offset_cells=cells)
    if options.dp and n_offsets:  # (b) skipped: its share goes to the rest (rule 3)
        return _calibrated(options, start, budget.rounds, n_features, 0)
    return replace(budget, n_offsets=0)


def _calibrated(options: TrainOptions, start: Start, rounds: int, n_features: int, n_offsets: int) -> Budget:
    try:
        rho = calibrate_scale(lambda r: start.events + Budget(r, rounds, n_features, n_offsets).events(),
                              target_epsilon=options.epsilon, delta=start.delta, low=1e-9, high=1e3)
    except ValueError as exc:
        bad_option(f"--epsilon {options.epsilon} cannot be met ({exc})", "raise --epsilon")
        raise
    return Budget(rho, rounds, n_features, n_offsets)


def offset_resolution(n_noisy: float, sigma: float) -> int | None:
    """Sub-cells per bin of the within-bin histograms: the largest of ``OFFSET_CELLS`` whose
    sub-cells hold on average >= CELL_SIGNAL x sigma rows over the ``NUMERIC_BINS`` bins, or
    None when even the coarsest does not (rule 3)."""
    fitting = [c for c in OFFSET_CELLS if n_noisy / (NUMERIC_BINS * c) >= CELL_SIGNAL * sigma]
    return max(fitting) if fitting else None


def pair_resolution(n_noisy: float, sigma: float, numeric_bins: int = NUMERIC_BINS) -> int | None:
    """Numeric cells per column in the selected marginals (rule 3): the codec's codes (None)
    when a pair of ``numeric_bins``-bin columns holds on average >= PAIR_SIGNAL x sigma rows
    per cell, else the largest of ``PAIR_BINS`` (below ``numeric_bins``) that does, else the
    smallest.

    Measured on both demo tables (3 seeds; eps 1 and 3.5 on 400 and 1,000 sampled training
    rows, eps 1, 3.5 and 10 on all): the codes gave the lowest two-way TVD wherever that
    average was >= 0.48 sigma (and the lowest detection AUC on flchain; on rotterdam 0.01-0.03
    above 8 cells), 8 cells the lowest wherever it was <= 0.22 sigma. PAIR_SIGNAL sits between.
    """
    if n_noisy / numeric_bins**2 >= PAIR_SIGNAL * sigma:
        return None
    fitting = [b for b in PAIR_BINS if b < numeric_bins and n_noisy / b**2 >= PAIR_SIGNAL * sigma]
    return max(fitting) if fitting else PAIR_BINS[0]


class Cells:
    """The cells of every column at one resolution: the codec's codes (``bins`` None), or each
    numeric column's value codes merged into ``bins`` consecutive cells, missing kept apart
    (``fine_only``: only the fine columns', rule 6). Categorical columns and the target (-1)
    always keep their codes."""

    def __init__(self, codec: Codec, bins: int | None, *, fine_only: bool = False) -> None:
        self.bins = bins
        self.key = (bins, fine_only)  # one codec: the key says the cells
        self.n_classes = codec.n_classes
        merged = [bins is not None and isinstance(col, NumericColumn) and (not fine_only or col.name in codec.fine_columns)
                  for col in codec.features]
        self.maps = [_coarse_map(c.n_codes, c.nullable, bins) if merge else np.arange(c.n_codes)
                     for merge, c in zip(merged, codec.columns)]
        self.sizes = [int(m.max()) + 1 for m in self.maps]

    def shape(self, columns: tuple[int, ...]) -> list[int]:
        return [self.n_classes if j < 0 else self.sizes[j] for j in columns]

    def histogram(self, codes: np.ndarray, y: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
        """Exact counts of the rows over the cells of ``columns`` (flattened, the last column fastest)."""
        index, sizes = np.zeros(len(y), dtype=np.int64), self.shape(columns)
        for j, size in zip(columns, sizes):
            index = index * size + (y if j < 0 else self.maps[j][codes[:, j]])
        return np.bincount(index, minlength=int(np.prod(sizes))).astype(np.float64)

    def cell_of_code(self) -> np.ndarray | None:
        """The cell of every code, both numbered across all columns (codes as the heads lay
        them out, cells as ``sizes``); None: the identity."""
        if all(len(m) == size for m, size in zip(self.maps, self.sizes)):
            return None
        starts = np.cumsum([0] + self.sizes)[:-1]
        return np.concatenate([start + mapping for start, mapping in zip(starts, self.maps)])


def _coarse_map(n_codes: int, nullable: bool, bins: int) -> np.ndarray:
    """Merge consecutive value codes into at most ``bins`` cells; missing stays its own."""
    n_values = n_codes - int(nullable)
    bins = min(bins, n_values)
    mapping = (np.arange(n_values) * bins) // n_values
    return np.concatenate([mapping, [bins]]) if nullable else mapping


@dataclass(frozen=True)
class Marginal:
    """A measured marginal: columns (feature indices; -1 is the target) at the resolution
    ``cells``, noisy counts, noise std (one for every cell, or one per cell)."""

    columns: tuple[int, ...]
    cells: Cells
    noisy: np.ndarray
    sigma: float | np.ndarray


def sub_marginal(m: Marginal, order: tuple[int, ...]) -> Marginal | None:
    """``m`` with the feature drawn last (in ``order``) summed out (rule 7; None for one
    feature): post-processing, each cell's noise variance the sum of the summed cells'."""
    features = [p for p, j in enumerate(m.columns) if j >= 0]
    if len(features) < 2:
        return None
    position = np.argsort(order)
    last, shape = max(features, key=lambda p: position[m.columns[p]]), m.cells.shape(m.columns)
    variance = np.broadcast_to(np.asarray(m.sigma, dtype=np.float64) ** 2, m.noisy.shape)
    return Marginal(m.columns[:last] + m.columns[last + 1:], m.cells, m.noisy.reshape(shape).sum(last).ravel(),
                    np.sqrt(variance.reshape(shape).sum(last)).ravel())


def draw_order(d: int, selected: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Rule 8: maximum cardinality search on the graph of the features measured together in
    ``selected`` (a marginal of one feature adds no edge): next is the feature with the most
    neighbours already placed, then the one with the most neighbours, then the first in the
    codec's order."""
    adjacent = np.zeros((d, d), dtype=np.int64)
    for columns in selected:
        features = [j for j in columns if j >= 0]
        for a in features:
            adjacent[a, [b for b in features if b != a]] = 1
    degree, placed, order = adjacent.sum(1), np.zeros(d, dtype=np.int64), []
    for _ in range(d):
        key = np.where(np.isin(np.arange(d), order), -1, placed * d + degree)
        order.append(int(np.argmax(key)))
        placed += adjacent[order[-1]]
    return tuple(order)


def least_measured(times: np.ndarray) -> np.ndarray:
    """Rule 1c: the candidates open to selection, those measured the fewest times so far."""
    return times == times.min()


def select(scores: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """Exponential mechanism, sensitivity 1: P(i) proportional to exp(epsilon * score_i / 2).

    Implemented with the Gumbel-max trick (the same distribution).
    """
    return int(np.argmax(epsilon * scores / 2.0 + rng.gumbel(size=len(scores))))


# -- the run --------------------------------------------------------------------------

ENGINE = "marginal-mlp"


def fit(frame: pd.DataFrame, y: np.ndarray, codec: Codec, options: TrainOptions, start: Start, *,
        seed: int, progress: Progress | None = None) -> EngineResult:
    """Measure (rule 1) and fit the generator to the noisy marginals (rule 4). ``codec``: the
    schema's coarse codec; the result's codec may make some columns fine (rule 6)."""
    d = len(codec.columns)
    budget = plan_budget(options, start, d, codec.n_offsets)
    rng = np.random.default_rng(seed)
    cells = budget.offset_cells
    codec, codes, within, splits = measure_within_bins_and_refine(frame, codec, budget, start.n, rng)
    workload = measure_workload(codes, y, codec, budget, rng)
    table = offset_table(within) if within else None
    counts = class_counts(workload, start, codec.n_classes)
    measured = workload + splits
    prior, n_noisy = counts / counts.sum(), float(counts.sum())
    pair_cells = Cells(codec, pair_resolution(n_noisy, budget.measure_sigma,
                                              FINE_BINS if codec.fine_columns else NUMERIC_BINS))
    device = torch.device(options.device)
    torch.manual_seed(seed)
    generator = Generator(_config(codec, options, cells))
    if table is not None:
        generator.offset_table.copy_(torch.as_tensor(table, dtype=torch.float32))
    generator = generator.to(device)
    fitter = Fitter(generator, prior, n_noisy, seed, floored=category_codes(codec))
    round_steps = steps_per_round(budget.rounds)
    fitter.fit(measured, round_steps)
    candidates = candidate_marginals(d, codec, pair_cells)
    exact = [cells.histogram(codes, y, c) for c, cells in candidates]
    times = np.zeros(len(candidates), dtype=np.int64)
    for r in range(budget.rounds):
        scores = selection_scores(exact, fitter.expected(candidates), n_noisy, budget.measure_sigma)
        k = select(np.where(least_measured(times), scores, -np.inf), budget.select_epsilon, rng)
        times[k] += 1
        noisy = exact[k] + rng.normal(0, budget.measure_sigma, exact[k].shape)
        measured.append(Marginal(*candidates[k], noisy, budget.measure_sigma))
        generator.reorder(draw_order(d, [m.columns for m in measured]))  # one-way marginals add no edge
        fitter.fit(measured, round_steps)
        if progress:
            spent = epsilon(start.events + budget.events(r + 1), start.delta) if options.dp else None
            progress(ProgressReport("round", r + 1, budget.rounds, spent,
                                    f"measured {_name(codec, *candidates[k])}"))
    fitter.fit(measured, FIT_STEPS_FINAL, anneal=True)
    events = budget.events() if options.dp else []
    details = {"engine": ENGINE, "rounds": budget.rounds,
               "pair_cells": (pair_cells.bins or "codes") if budget.rounds else None,
               "fine_columns": list(codec.fine_columns),
               "offset_cells": cells or None, "workload_sigma": budget.workload_sigma if options.dp else None,
               "offset_sigma": budget.offset_sigma if options.dp and cells else None,
               "measure_sigma": budget.measure_sigma if options.dp and budget.rounds else None,
               "select_epsilon": budget.select_epsilon if options.dp and budget.rounds else None,
               "measured": [_name(codec, m.columns, m.cells)  # the fine splits are derived, not measured
                            for m in workload + measured[len(workload) + len(splits):]],
               "fit_steps": round_steps * (budget.rounds + 1) + FIT_STEPS_FINAL,
               "selection": "last step (no data-dependent choice)"}
    return EngineResult(generator.cpu(), list(prior), events, details, codec)


def steps_per_round(rounds: int) -> int:
    """Adam steps after each measurement: ``FIT_STEPS_PER_ROUND``, fewer when the rounds would
    take more than ``FIT_STEPS_ROUNDS`` in all (the final fit is the same length for every table)."""
    return max(1, min(FIT_STEPS_PER_ROUND, FIT_STEPS_ROUNDS // max(rounds, 1)))


def measure_within_bins_and_refine(frame: pd.DataFrame, codec: Codec, budget: Budget, n_noisy: float,
                                   rng: np.random.Generator
                                   ) -> tuple[Codec, np.ndarray, list[np.ndarray], list[Marginal]]:
    """Rule 1b, then rule 6: the codec (fine columns or not), the rows' codes under it, the
    within-bin histograms in its layout (none when (b) is skipped) and the fine columns'
    one-way marginals."""
    codes, offsets = codec.encode_codes(frame)
    if not budget.offset_cells:
        return codec, codes, [], []
    within = measure_within_bins(codes, offsets, codec, budget.offset_cells, budget.offset_sigma, rng)
    fine = fine_columns(codec, within, n_noisy, budget.workload_sigma)
    if not fine:
        return codec, codes, within, []
    codec = Codec(codec.schema, fine_columns=fine)
    is_fine = [codec.columns[j].name in fine for j in codec.offset_heads]
    splits = [fine_split(h, j, codec, budget.offset_sigma)
              for h, j, f in zip(within, codec.offset_heads, is_fine) if f]
    return codec, codec.encode_codes(frame)[0], [refined(h) if f else h for h, f in zip(within, is_fine)], splits


def fine_columns(codec: Codec, within: list[np.ndarray], n_noisy: float, sigma: float) -> tuple[str, ...]:
    """The binned columns to halve the bins of (rule 6), from the noisy within-bin histograms.

    A column is fine when its rows sit in few bins, ``exp(entropy) <= FINE_EFFECTIVE_BINS``
    of the noisy bin shares (each bin's noisy count summed over its sub-cells, then clamped
    at 0), and when the table has the rows for finer cells: (column, target) cells over
    those bins, halved, would hold >= CELL_SIGNAL x sigma rows on average (``sigma``: the
    workload's noise, a public scale of the noise every marginal gets; the workload itself
    stays at the coarse bins). Every binned column fine was worse on rotterdam (age, pgr
    and er spread over 13-14 of their bins): detection AUC 0.687 vs 0.635 at epsilon 10.
    """
    out = []
    for h, j in zip(within, codec.offset_heads):
        counts = np.maximum(h[: codec.columns[j].value_codes].sum(1), 0.0)
        if counts.sum() <= 0:
            continue
        shares = counts[counts > 0] / counts.sum()
        effective = float(np.exp(-(shares * np.log(shares)).sum()))
        if effective <= FINE_EFFECTIVE_BINS and n_noisy / (2 * effective * codec.n_classes) >= CELL_SIGNAL * sigma:
            out.append(codec.columns[j].name)
    return tuple(out)


def _halves(noisy: np.ndarray) -> np.ndarray:
    """A coarse within-bin histogram's value rows as fine bins: row 2k is bin k's lower half of
    sub-cells, row 2k + 1 its upper half (FINE_BINS x cells / 2)."""
    return noisy[:NUMERIC_BINS].reshape(FINE_BINS, noisy.shape[1] // 2)


def refined(noisy: np.ndarray) -> np.ndarray:
    """A coarse column's within-bin histogram (codes x cells) as its fine column's: bin k's
    lower half of sub-cells becomes fine bin 2k, its upper half 2k + 1, each sub-cell split in
    two equal ones (the offsets are uniform inside a sub-cell); the missing row stays last."""
    return np.concatenate([np.repeat(_halves(noisy), 2, axis=1), noisy[NUMERIC_BINS:]])


def fine_split(noisy: np.ndarray, j: int, codec: Codec, sigma: float) -> Marginal:
    """The one-way marginal of fine column ``j`` from its coarse within-bin histogram (rule 6):
    each fine bin's count is the sum of its half of the sub-cells (noise std sqrt(cells / 2)
    sigma), the missing code's the sum of its row (sqrt(cells) sigma)."""
    cells = noisy.shape[1]
    counts = np.concatenate([_halves(noisy).sum(1), noisy[NUMERIC_BINS:].sum(1)])
    sigmas = np.where(np.arange(len(counts)) < FINE_BINS, math.sqrt(cells / 2), math.sqrt(cells)) * sigma
    return Marginal((j,), Cells(codec, None), counts, sigmas)


def category_codes(codec: Codec) -> np.ndarray:
    """Where each category of a categorical feature sits in the heads' codes (rule 5; the
    missing code is not a category)."""
    starts = np.cumsum([0] + codec.head_sizes)
    return np.array([starts[j] + k for j, (col, c) in enumerate(zip(codec.features, codec.columns))
                     if isinstance(col, CategoricalColumn) for k in range(len(col.categories))], dtype=np.int64)


def _name(codec: Codec, columns: tuple[int, ...], cells: Cells) -> str:
    """``a x b x target``, with the resolution when some column's cells are not its codes."""
    target = codec.target.name if codec.target is not None else "(all rows)"
    name = " x ".join(target if j < 0 else codec.columns[j].name for j in columns)
    merged = any(j >= 0 and cells.sizes[j] < codec.columns[j].n_codes for j in columns)
    return f"{name} (numbers in {cells.bins} cells)" if merged else name


def _config(codec: Codec, options: TrainOptions, cells: int) -> GeneratorConfig:
    """Offsets from the within-bin table when it was measured, else uniform inside the bin."""
    table = {"offsets": "table", "offset_heads": tuple(codec.offset_heads), "offset_cells": cells} if cells else \
        {"offsets": "uniform"}
    return GeneratorConfig(options.latent_dim, options.hidden or HIDDEN, codec.n_classes,
                           tuple(codec.head_sizes), codec.n_offsets, **table, context_dim=CONTEXT_DIM)


def measure_workload(codes: np.ndarray, y: np.ndarray, codec: Codec, budget: Budget,
                     rng: np.random.Generator) -> list[Marginal]:
    """Every (feature, target) marginal at the coarse codes, with Gaussian noise (rule 1a)."""
    out, cells = [], Cells(codec, NUMERIC_BINS, fine_only=True)
    for j in range(len(codec.columns)):
        exact = cells.histogram(codes, y, (j, -1))
        noisy = exact + rng.normal(0, budget.workload_sigma, exact.shape)
        out.append(Marginal((j, -1), cells, noisy, budget.workload_sigma))
    return out


def measure_within_bins(codes: np.ndarray, offsets: np.ndarray, codec: Codec, cells: int, sigma: float,
                        rng: np.random.Generator) -> list[np.ndarray]:
    """Per binned numeric column: noisy counts over (code, sub-cell), codes x cells (rule 1b).

    Sensitivity 1 per column: a row adds 1 to one cell of each column's histogram.
    """
    out = []
    for k, j in enumerate(codec.offset_heads):
        size = codec.columns[j].n_codes
        exact = np.bincount(codes[:, j] * cells + sub_cells(offsets[:, k], cells), minlength=size * cells)
        out.append((exact + rng.normal(0, sigma, exact.shape)).reshape(size, cells))
    return out


def offset_table(noisy: list[np.ndarray]) -> np.ndarray:
    """Post-processing of the within-bin histograms into probabilities (columns x codes x cells):
    negative counts to 0, each row normalised; a row with no positive count (and the padding
    of shorter columns) is uniform."""
    codes, cells = max(h.shape[0] for h in noisy), noisy[0].shape[1]
    table = np.full((len(noisy), codes, cells), 1.0 / cells)
    for k, h in enumerate(noisy):
        positive = np.maximum(h, 0.0)
        totals = positive.sum(1, keepdims=True)
        table[k, : len(h)] = np.where(totals > 0, positive / np.where(totals > 0, totals, 1.0), 1.0 / cells)
    return table


def selection_scores(exact: list[np.ndarray], model: list[np.ndarray], n_noisy: float,
                     sigma: float) -> np.ndarray:
    """AIM's score: L1 error of the model minus the L1 error expected from noise alone.

    Sensitivity 1: adding or removing a row changes one cell of ``exact`` by 1.
    """
    return np.array([np.abs(e - n_noisy * m).sum() - math.sqrt(2 / math.pi) * sigma * e.size
                     for e, m in zip(exact, model)])


def class_counts(workload: list[Marginal], start: Start, n_classes: int) -> np.ndarray:
    """DP class counts: inverse-variance average of the histogram and the workload's
    class sums (post-processing), clamped to >= 1."""
    estimates = [start.class_counts] + [m.noisy.reshape(-1, n_classes).sum(0) for m in workload]
    hist_var = start.events[0].noise_multiplier ** 2 if start.events else 1.0
    variances = [hist_var] + [m.sigma ** 2 * (m.noisy.size // n_classes) for m in workload]
    weights = 1.0 / np.maximum(np.array(variances), 1e-12)
    return np.maximum((weights[:, None] * np.stack(estimates)).sum(0) / weights.sum(), 1.0)


def candidate_marginals(d: int, codec: Codec, cells: Cells) -> list[tuple[tuple[int, ...], Cells]]:
    """All feature pairs, and with a target all (pair, target) triples, at ``cells``; when those
    are the codes of a codec with fine columns, each of them that holds a fine column again at
    the coarse bins (rule 6); and each of them again at ``COARSE_PAIR_BINS`` cells per number
    where that merges some of its cells (rule 3). The selection's score weighs each
    resolution's noise."""
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    columns = pairs + ([(i, j, -1) for i, j in pairs] if codec.n_classes > 1 else [])
    out = [(c, cells) for c in columns]
    if codec.fine_columns and cells.bins is None:
        coarse, fine = Cells(codec, NUMERIC_BINS, fine_only=True), set(codec.fine_columns)
        out += [(c, coarse) for c in columns if any(j >= 0 and codec.columns[j].name in fine for j in c)]
    merged = Cells(codec, COARSE_PAIR_BINS)
    return out + [(c, merged) for c in columns if any(j >= 0 and merged.sizes[j] < cells.sizes[j] for j in c)]


# -- fitting (post-processing: reads only noisy marginals) ---------------------------

class Moments:
    """The expected marginals of a batch, for a fixed list of (columns, cells) marginals.

    With ``P`` the heads' code probabilities (batch x codes of every column)
    and ``Q`` their cells (``P`` summed by ``Cells.cell_of_code``), the expected share
    of the cell (a = i, b = j, target = c), a < b, is the batch mean of
    ``Q[a, i] Q[b, j] [y = c]`` when heads are independent given (z, y). When
    each head reads the codes before it (rule 7), ``Q[a, i]`` is replaced by
    the drawn code's cell ``D[a, i]`` and ``Q[b, j]`` is b's probability given
    the drawn codes: ``E[D[a, i] Q[b, j]] = P(a = i, b = j)``, and the gradient
    reaches b's head (a's is fitted by its own marginals, those where it is
    drawn later, and the sub-marginals of rule 7). "Before" and "last" are in the
    generator's draw order ``order``; the marginals' features may come in any
    order. Marginals of one shape at one resolution are computed together, as
    one batched product per class. ``compute`` returns each marginal's cells in
    the order ``Cells.histogram`` counts them, the marginals one after another.
    """

    def __init__(self, marginals: list[tuple[tuple[int, ...], Cells]], device: torch.device,
                 order: tuple[int, ...]) -> None:
        resolutions = {cells.key: cells for _, cells in marginals}
        self.merges = {key: _merge(cells, device) for key, cells in resolutions.items()}
        position = np.argsort(order)
        drawn = [tuple(sorted((j for j in columns if j >= 0), key=lambda j: position[j])) for columns, _ in marginals]
        groups: dict[tuple[tuple, tuple[int, ...], bool], list[int]] = {}
        for k, (columns, cells) in enumerate(marginals):
            if len(set(drawn[k])) != len(drawn[k]) or columns[len(drawn[k]):] not in ((), (-1,)):
                raise ValueError(f"a marginal names distinct features, then maybe the target (-1), not {columns}")
            groups.setdefault((cells.key, tuple(cells.sizes[j] for j in drawn[k]), len(drawn[k]) < len(columns)),
                              []).append(k)
        self.groups: list[tuple[tuple, list[torch.Tensor], bool]] = []  # (resolution, cells per feature, target)
        self.widths = [0] * len(marginals)
        place, at = [0] * len(marginals), 0
        for (resolution, shape, with_target), members in groups.items():
            starts = np.cumsum([0] + resolutions[resolution].sizes)
            self.groups.append((resolution, [torch.as_tensor(np.stack([starts[drawn[k][p]] + np.arange(size)
                                                                       for k in members]), device=device)
                                             for p, size in enumerate(shape)], with_target))
            for k in members:
                self.widths[k] = int(np.prod(shape)) * (marginals[k][1].n_classes if with_target else 1)
                place[k], at = at, at + self.widths[k]
        layouts = [p + _histogram_layout(c, d, cells) for (c, cells), d, p in zip(marginals, drawn, place)]
        self.order = torch.as_tensor(np.concatenate(layouts + [np.zeros(0)]).astype(np.int64), device=device)

    def compute(self, probs: torch.Tensor, class_rows: list[slice], drawn: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Expected shares of every marginal's cells, for a batch whose rows of class ``c``
        are ``probs[class_rows[c]]``. ``drawn``: the one-hot codes the batch drew, for a
        generator whose heads read the codes before them; then every feature of a marginal but
        its last is the drawn code (the last head's probabilities are given those codes)."""
        spaces = {key: _in_cells(probs, merge) for key, merge in self.merges.items()}
        hard = spaces if drawn is None else {key: _in_cells(drawn, merge) for key, merge in self.merges.items()}
        parts = []
        for resolution, cells, with_target in self.groups:
            factors = [_columns(hard[resolution], c) for c in cells[:-1]] + [_columns(spaces[resolution], cells[-1])]
            blocks = [_product([f[rows] for f in factors]) for rows in class_rows] if with_target \
                else [_product(factors)]
            parts.append(torch.stack(blocks, dim=-1).reshape(-1))
        return torch.cat(parts)[self.order] / probs.shape[0]

    def split(self, vector: np.ndarray) -> list[np.ndarray]:
        """``compute``'s vector as one array per marginal."""
        return np.split(vector, np.cumsum(self.widths)[:-1]) if self.widths else []


def _histogram_layout(columns: tuple[int, ...], drawn: tuple[int, ...], cells: Cells) -> np.ndarray:
    """Where each cell of ``Cells.histogram``'s layout for ``columns`` sits in the layout
    computed with the features in the draw order ``drawn`` (the target, if any, last in both)."""
    target = columns[len(drawn):]
    computed = [cells.sizes[j] for j in drawn] + ([cells.n_classes] if target else [])
    axes = [drawn.index(j) for j in columns[: len(drawn)]] + ([len(drawn)] if target else [])
    return np.arange(int(np.prod(computed))).reshape(computed).transpose(axes).ravel()


def _columns(shares: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``shares[:, index]`` (batch x marginals x cells) through ``index_select``, whose
    backward is an ``index_add``: cheaper on CPU than advanced indexing's."""
    return shares.index_select(1, index.reshape(-1)).view(len(shares), *index.shape)


def _merge(cells: Cells, device: torch.device) -> tuple[torch.Tensor, int] | None:
    """``cells`` as ``_in_cells`` takes them: None (each code its own cell), or the cell of
    every code (``Cells.cell_of_code``) and the number of cells."""
    cell_of = cells.cell_of_code()
    return None if cell_of is None else (torch.as_tensor(cell_of, device=device), sum(cells.sizes))


def _in_cells(codes: torch.Tensor, merge: tuple[torch.Tensor, int] | None) -> torch.Tensor:
    """Per-code shares (batch x codes) summed into their cells (``Cells.cell_of_code``)."""
    if merge is None:
        return codes
    cell_of, n_cells = merge
    return codes.new_zeros((len(codes), n_cells)).index_add(1, cell_of, codes)


def _product(factors: list[torch.Tensor]) -> torch.Tensor:
    """Sum over the batch of the outer product of one or two factors (batch x marginals x size)."""
    if len(factors) == 1:
        return factors[0].sum(0)
    a, b = factors
    return torch.bmm(a.permute(1, 2, 0), b.permute(1, 0, 2))


class Fitter:
    """Trains the generator's heads so a batch's expected marginals match the noisy ones.

    Loss: sum over measured marginals (and, for heads that read earlier codes, their
    sub-marginals: rule 7) of ``||E_batch[marginal] - noisy / n||^2`` weighted by the
    inverse noise variance (GEM's objective with weights), plus
    ``sum (1 - share / CATEGORY_FLOOR)^2`` over the ``floored`` codes whose batch
    share is below the floor (rule 5; zero otherwise).
    """

    def __init__(self, generator: Generator, prior: np.ndarray, n_noisy: float, seed: int,
                 floored: np.ndarray | None = None) -> None:
        self.generator = generator
        self.prior = prior
        self.n_noisy = n_noisy
        self.device = next(generator.parameters()).device
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=FIT_LR)
        self.rng = torch.Generator(device=self.device).manual_seed(seed)
        self.floored = torch.as_tensor(np.zeros(0, dtype=np.int64) if floored is None else floored,
                                       device=self.device)

    def fit(self, marginals: list[Marginal], steps: int, *, anneal: bool = False) -> None:
        """``steps`` Adam steps on fresh batches; ``anneal``: the learning rate decays from
        ``FIT_LR`` to ``FIT_LR_FLOOR`` on a cosine over the steps (the final fit: a decayed rate
        settles on a minimum instead of wandering around it with the batch noise)."""
        order = self.generator.config.order
        if self.generator.config.context_dim:  # rule 7: the earlier heads learn from every marginal too
            marginals = marginals + [s for m in marginals if (s := sub_marginal(m, order)) is not None]
        moments = Moments([(m.columns, m.cells) for m in marginals], self.device, order)
        target = torch.as_tensor(np.concatenate([m.noisy for m in marginals]) / self.n_noisy,
                                 dtype=torch.float32, device=self.device)
        precision = np.concatenate([np.broadcast_to((self.n_noisy / np.asarray(m.sigma)) ** 2, m.noisy.shape)
                                    for m in marginals])
        weight = torch.as_tensor(precision / precision.max(), dtype=torch.float32, device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = FIT_LR
        for step in range(steps):
            if anneal:
                for group in self.optimizer.param_groups:
                    group["lr"] = FIT_LR_FLOOR + (FIT_LR - FIT_LR_FLOOR) * (1 + math.cos(math.pi * step / steps)) / 2
            probs, class_rows, drawn = self._batch(FIT_BATCH)
            shares = probs[:, self.floored].mean(0)
            loss = (weight * (moments.compute(probs, class_rows, drawn) - target) ** 2).sum() \
                + (F.relu(1 - shares / CATEGORY_FLOOR) ** 2).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    @torch.no_grad()
    def expected(self, marginals: list[tuple[tuple[int, ...], Cells]]) -> list[np.ndarray]:
        """The generator's normalised marginals of one or two features (and maybe the target),
        from one large batch, each in ``Cells.histogram``'s layout. All of one resolution come
        from one product per class, ``D_c^T Q_c`` over every cell (the drawn codes' cells
        against the heads' probabilities, ``Moments``' estimate): the selection scores
        thousands of candidates per round on a wide table."""
        probs, class_rows, drawn = self._batch(4 * FIT_BATCH)
        position, products, out = np.argsort(self.generator.config.order), {}, []
        for columns, cells in marginals:
            if cells.key not in products:
                merge = _merge(cells, self.device)
                soft = _in_cells(probs, merge)
                hard = soft if drawn is None else _in_cells(drawn, merge)
                gram = torch.stack([hard[rows].T @ soft[rows] for rows in class_rows]) / len(probs)
                products[cells.key] = gram.cpu().numpy(), np.cumsum([0] + cells.sizes)
            gram, starts = products[cells.key]
            features = [j for j in columns if j >= 0]
            if len(features) not in (1, 2) or columns[len(features):] not in ((), (-1,)):
                raise ValueError(f"expected takes one or two features, then maybe the target (-1), not {columns}")
            a, b = [slice(starts[j], starts[j + 1]) for j in (features * 2)[:2]]  # one feature: a = b
            if len(features) == 1:
                block = gram[:, a, a].sum(1)                      # classes x cells (one-hot rows sum to 1)
            elif position[features[0]] < position[features[1]]:
                block = gram[:, a, b]                             # classes x cells of a x cells of b
            else:
                block = gram[:, b, a].transpose(0, 2, 1)
            out.append(np.moveaxis(block, 0, -1).ravel() if len(features) < len(columns) else block.sum(0).ravel())
        return out

    def _batch(self, size: int) -> tuple[torch.Tensor, list[slice], torch.Tensor | None]:
        """Code probabilities for ``size`` fresh latents, classes in the prior's proportions,
        the rows of each class together (their slices returned too); for a generator whose
        heads read the codes before them, the probabilities given codes it drew, and those
        codes one-hot."""
        counts = np.floor(self.prior * size).astype(np.int64)
        counts[np.argmax(self.prior)] += size - counts.sum()
        y = torch.repeat_interleave(torch.arange(len(self.prior), device=self.device),
                                    torch.as_tensor(counts, device=self.device))
        z = torch.randn(size, self.generator.config.latent_dim, generator=self.rng, device=self.device)
        sizes = list(self.generator.config.head_sizes)
        if self.generator.config.context_dim:
            logits, codes = self.generator.forced_draw(z, y, self.rng)
        else:
            (logits, _), codes = self.generator(z, y), None
        probs = torch.cat([F.softmax(p, dim=1) for p in logits.split(sizes, dim=1)], dim=1)
        drawn = None if codes is None else \
            torch.zeros_like(probs).scatter_(1, codes + self.generator.head_starts, 1.0)
        ends = np.cumsum(counts)
        return probs, [slice(int(e - c), int(e)) for e, c in zip(ends, counts)], drawn
