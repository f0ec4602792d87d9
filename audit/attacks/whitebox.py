"""White-box membership inference on the released generator (GAN-Leaks).

The adversary of DESIGN.md's threat model holds the released weights and the
public schema, and asks of a target record (its class included: the target is
a column of the row): was it a training row? Chen, Yu, Zhang and Fritz 2020,
"GAN-Leaks: a taxonomy of membership inference attacks against generative
models" (CCS), the white-box attack and its calibration: a generator
reproduces its training rows more easily than other rows, so the attacker
searches the latent space for the input that best reconstructs the target.

Rows are named as in ``membership.py`` (members, non-members, reference);
every result names them in its notes.

Rules:
1. The target generator is a loaded ``Model``; so is the reference generator.
   Each must encode the targets' schema: the same modelled columns with the
   same encoding (names, bounds, transforms, categories, nullability) and an
   architecture of that layout, else ``ValueError`` naming the model and the
   first column that differs. A reference generator must also come from the
   same engine and use its offset head alike (its losses are subtracted term by
   term). Neither model is changed: the attack works on copies.
2. Reconstruction loss of a row ``x`` (codes ``c_j``, offsets ``o_k``, class
   ``y``) at a latent ``z``::

       L(z; x) = sum_j -log softmax_j(G(z, y, c_<j))[c_j]
               + sum_k (offset_k(G(z, y)) - o_k)^2      (config.offsets "learned" only;
                                                         not where the value is missing)
               + PRIOR_WEIGHT * ||z||^2 / 2

   The first two terms are the negative log-likelihood of the row under the
   generator's output (heads' softmax, each given the row's codes before it
   when the heads read them, ``release/generator.py`` rule 6: the exact
   likelihood of the codes at ``z``; offsets as a unit-variance Gaussian up
   to a factor 2 and a constant); the last is the negative log-density of the
   N(0, I) latent. A generator with ``offsets = "uniform"`` or ``"table"``
   draws offsets without the latent (``release/generator.py`` rules 4-5), so
   its offset head carries no information and is skipped; the two are alike
   here (a small reference table may get no within-bin table where the target
   generator has one). Chen et al. use an L2 (+ LPIPS) distance on
   images and the norm regulariser ``(||z||^2 - dim)^2`` at weight 0.001; the
   negative log-likelihood is the natural distance for softmax heads, and the
   Gaussian prior term keeps the search near the latents that sampling uses.
3. Each target's loss is minimised over ``z`` by Adam (lr ``ADAM_LR``) from
   ``restarts`` independent N(0, I) starts, all targets and starts of a chunk
   in one batch: every start takes ``SCREEN_STEPS`` steps, then each target's
   best start goes on alone to ``steps`` steps in all (the screening halves
   the cost of 8 starts x 150 steps at the same AUC on the memorising
   control of the tests). A target's reconstruction loss is the lowest value
   seen. Chen et al. optimise by L-BFGS from one start per target; Adam runs
   all targets as one batch on any device. The starts come from a torch
   generator seeded by ``rng``: seeded runs reproduce on one machine.
4. Scores, higher meaning "member":
   ``mia.gan_leaks_wb``            minus the reconstruction loss (rule 2,
                                   prior term included: the joint negative
                                   log-density at the best latent) under the
                                   target generator.
   ``mia.gan_leaks_wb_calibrated`` minus (the loss under the target generator
                                   - the loss under the reference generator),
                                   a generator of the same engine and options
                                   trained by the caller on the reference rows
                                   (never on members or non-members): Chen et
                                   al.'s calibration, which removes how easy a
                                   row is for any generator of this family.
                                   Without a reference generator, the baseline
                                   is the mean loss, under the target
                                   generator, of the ``CALIBRATION_NEIGHBOURS``
                                   reference rows closest to the target in the
                                   space of ``audit/features.py`` (a local
                                   population baseline; the mean over all
                                   reference rows would be one constant and
                                   leave the ranking, hence every figure, equal
                                   to the uncalibrated attack's). The notes say
                                   which baseline was used.
5. At most ``max_targets`` members and as many non-members (and reference rows
   for the population baseline) are attacked, drawn by ``rng`` without
   replacement: the cost grows with targets x restarts x steps. On flchain
   (6,299 members, 787 non-members, 788 reference rows) both attacks take
   about 12 s of one CPU thread against the GAN engine's generator with a
   reference generator, 9 s with the population baseline. The counts in a
   result are those of the rows attacked.
6. Measurements are those of ``membership.py`` rules 3 and 4 (AUC, ROC grid,
   TPR at 1% and 0.1% FPR, empirical epsilon with Clopper-Pearson on the
   threshold split), computed by its helpers. Random draws from ``rng``, in
   order and once per run: the targets, the threshold split, the seeds of the
   starts, then the reference rows; so one attack alone reproduces its entry
   in a run of both.
7. An unknown attack id, a set of rows that is empty or too small, a frame
   whose columns are not the schema's modelled columns, or a missing
   reference (rows, for the population baseline) is a ``ValueError`` naming
   it; an rng that is not a ``numpy.random.Generator`` or a model that is not
   a ``Model`` is a ``TypeError``.
8. Results hold aggregates only (``membership.py`` rule 6): no loss, latent
   or reconstruction of a row leaves this module.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import NearestNeighbors

from hgan.audit.attacks.membership import MIN_ROWS, AttackResult, _threshold_split, measure_scores
from hgan.audit.features import attack_features, check_columns
from hgan.release.codec import Codec
from hgan.release.model import Model
from hgan.release.schema import NumericColumn, Schema

ATTACK_IDS = ("mia.gan_leaks_wb", "mia.gan_leaks_wb_calibrated")
MAX_TARGETS = 1000          # rule 5: members and non-members attacked, each
RESTARTS = 8                # rule 3: independent N(0, I) starts per target
STEPS = 150                 # rule 3: Adam steps of the start kept for a target
SCREEN_STEPS = 30           # rule 3: Adam steps of every start before the best one is kept
ADAM_LR = 0.1               # rule 3: latents are N(0, I); 0.1 moves a coordinate a sigma in ~10 steps
PRIOR_WEIGHT = 1.0          # rule 2: the negative log-density of N(0, I), unscaled
CALIBRATION_NEIGHBOURS = 20  # rule 4: reference rows in a target's population baseline
_CHUNK_LATENTS = 8192       # rule 3: latents optimised in one batch (targets x restarts)


# -- public API ----------------------------------------------------------------

def run_whitebox_attacks(model: Model, members: pd.DataFrame, non_members: pd.DataFrame,
                         reference: pd.DataFrame | None, schema: Schema, rng: np.random.Generator, *,
                         reference_model: Model | None = None, delta: float = 0.0, confidence: float = 0.95,
                         attacks: tuple[str, ...] = ATTACK_IDS, max_targets: int = MAX_TARGETS,
                         restarts: int = RESTARTS, steps: int = STEPS,
                         device: str = "cpu") -> list[AttackResult]:
    """Run ``attacks`` (both by default) on one threshold split; one result each, in order.

    ``reference`` (rows) is needed only by ``mia.gan_leaks_wb_calibrated``
    without ``reference_model``; it is counted in the results whenever given.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (numpy.random.default_rng(seed))")
    unknown = [a for a in attacks if a not in ATTACK_IDS]
    if unknown or not attacks:
        raise ValueError(f"unknown or no white-box attack id(s) {unknown}; known: {', '.join(ATTACK_IDS)}")
    if max_targets < MIN_ROWS["members"] or restarts < 1 or steps < 0:
        raise ValueError(f"need max_targets >= {MIN_ROWS['members']}, restarts >= 1 and steps >= 0; "
                         f"got {max_targets}, {restarts}, {steps}")
    calibrated = "mia.gan_leaks_wb_calibrated" in attacks
    target_model = _checked_model(model, schema, "model")
    baseline_model = None
    if calibrated and reference_model is not None:
        baseline_model = _checked_model(reference_model, schema, "reference_model")
        _check_same_family(model, reference_model)
    if calibrated and reference_model is None and reference is None:
        raise ValueError("reference: mia.gan_leaks_wb_calibrated needs a reference generator "
                         "(reference_model) or reference rows for a population baseline")
    frames = {"members": members, "non-members": non_members}
    if reference is not None:
        frames["reference"] = reference
    for role, frame in frames.items():
        _check_frame(frame, schema, role)
    torch_device = torch.device(device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device}: no CUDA device is available; use device='cpu'")

    # rule 6: every draw from rng, in a fixed order
    member_rows = _sample(len(members), max_targets, rng)
    non_member_rows = _sample(len(non_members), max_targets, rng)
    first_half = _threshold_split(len(member_rows), len(non_member_rows), rng)
    seeds = [int(s) for s in rng.integers(0, 2**62, size=3)]
    targets = pd.concat([members.iloc[member_rows], non_members.iloc[non_member_rows]], ignore_index=True)
    codec = target_model.codec  # each generator reads rows through the codec it was trained with
    encoded = _encode(targets, codec, "targets")

    # rule 4: losses, then scores
    target_losses = _reconstruct(target_model, encoded, restarts=restarts, steps=steps, seed=seeds[0],
                                 device=torch_device)
    scores = {"mia.gan_leaks_wb": -target_losses}
    if calibrated:
        if baseline_model is not None:
            baseline = _reconstruct(baseline_model, _encode(targets, baseline_model.codec, "targets"),
                                    restarts=restarts, steps=steps, seed=seeds[1], device=torch_device)
            baseline_note = ("baseline: the loss under a reference generator of the same engine, trained on "
                             "reference rows")
        else:
            assert reference is not None
            reference_rows = reference.iloc[_sample(len(reference), max_targets, rng)]
            baseline = _population_baseline(target_model, targets, reference_rows, schema, codec,
                                            restarts=restarts, steps=steps, seed=seeds[2], device=torch_device)
            baseline_note = (f"no reference generator given; baseline: the mean loss, under the target "
                             f"generator, of the {min(CALIBRATION_NEIGHBOURS, len(reference_rows))} reference "
                             f"rows closest to the target (of {len(reference_rows)} attacked)")
        scores["mia.gan_leaks_wb_calibrated"] = -(target_losses - baseline)

    n_reference = len(reference) if reference is not None else 0
    common = (f"members: {len(member_rows)} of {len(members)} training rows; non-members: "
              f"{len(non_member_rows)} of {len(non_members)} holdout rows never used in training; "
              f"reference: {n_reference} other holdout rows; latent search: Adam, {restarts} starts x {steps} "
              f"steps per target")
    notes = {a: f"{common}; {_NOTES[a]}" for a in attacks}
    if calibrated:
        notes["mia.gan_leaks_wb_calibrated"] += f"; {baseline_note}"
    return [measure_scores(a, scores[a], n_members=len(member_rows), n_non_members=len(non_member_rows),
                           n_reference=n_reference, n_synthetic=0, first_half=first_half, delta=delta,
                           confidence=confidence, notes=notes[a])
            for a in attacks]


def gan_leaks_wb(model: Model, members: pd.DataFrame, non_members: pd.DataFrame, schema: Schema,
                 rng: np.random.Generator, *, delta: float = 0.0, confidence: float = 0.95,
                 max_targets: int = MAX_TARGETS, restarts: int = RESTARTS, steps: int = STEPS,
                 device: str = "cpu") -> AttackResult:
    """``mia.gan_leaks_wb``: minus the best reconstruction loss of the target under the generator."""
    return run_whitebox_attacks(model, members, non_members, None, schema, rng, delta=delta,
                                confidence=confidence, attacks=("mia.gan_leaks_wb",), max_targets=max_targets,
                                restarts=restarts, steps=steps, device=device)[0]


def gan_leaks_wb_calibrated(model: Model, members: pd.DataFrame, non_members: pd.DataFrame,
                            reference: pd.DataFrame | None, schema: Schema, rng: np.random.Generator, *,
                            reference_model: Model | None = None, delta: float = 0.0, confidence: float = 0.95,
                            max_targets: int = MAX_TARGETS, restarts: int = RESTARTS, steps: int = STEPS,
                            device: str = "cpu") -> AttackResult:
    """``mia.gan_leaks_wb_calibrated``: the same, minus the loss under a reference generator (rule 4)."""
    return run_whitebox_attacks(model, members, non_members, reference, schema, rng,
                                reference_model=reference_model, delta=delta, confidence=confidence,
                                attacks=("mia.gan_leaks_wb_calibrated",), max_targets=max_targets,
                                restarts=restarts, steps=steps, device=device)[0]


# -- inputs (rules 1, 5 and 7) ------------------------------------------------------

@dataclass(frozen=True)
class _Encoded:
    """Targets as the generator sees them: codes (n, heads), offsets (n, n_offsets), classes (n,)."""

    codes: np.ndarray
    offsets: np.ndarray
    offset_present: np.ndarray  # (n, n_offsets) bool: False where the value is missing
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def _checked_model(model: Model, schema: Schema, role: str) -> Model:
    """Rule 1: ``model`` encodes ``schema``; return it with an eval-mode copy of its generator."""
    if not isinstance(model, Model):
        raise TypeError(f"{role} must be a release.model.Model (load_model(path)), got {type(model).__name__}")
    mine, theirs = _encoding(model.schema), _encoding(schema)
    if mine != theirs:
        names = [c.name for c in schema.modelled]
        differing = next((a.name for a, b in zip(mine, theirs) if a != b), None)
        where = (f"column {differing!r} is encoded differently" if differing is not None else
                 f"it models columns {[c.name for c in model.schema.modelled]}, the targets {names}")
        raise ValueError(f"{role}: its codec does not match the targets' schema ({where}); "
                         "attack a generator with the schema it was trained on")
    codec, config = model.codec, model.generator.config
    if (list(config.head_sizes) != codec.head_sizes or config.n_offsets != codec.n_offsets
            or config.n_classes != codec.n_classes):
        raise ValueError(f"{role}: its generator's heads do not match the layout its schema implies")
    generator = copy.deepcopy(model.generator).eval()
    generator.requires_grad_(False)
    return replace(model, generator=generator)


def _encoding(schema: Schema) -> list:
    """What the codec reads of each modelled column (``decimals`` only rounds decoded values)."""
    return [replace(c, decimals=None) if isinstance(c, NumericColumn) else c for c in schema.modelled]


def _check_same_family(model: Model, reference_model: Model) -> None:
    engines = (model.metadata.get("engine"), reference_model.metadata.get("engine"))
    modes = (model.generator.config.offsets, reference_model.generator.config.offsets)
    if engines[0] != engines[1] or (modes[0] == "learned") != (modes[1] == "learned"):
        raise ValueError(f"reference_model: engine {engines[1]!r} with offsets {modes[1]!r} differs from the "
                         f"target generator's ({engines[0]!r}, {modes[0]!r}); train the reference generator "
                         "with the same options on the reference rows")


def _check_frame(frame: pd.DataFrame, schema: Schema, role: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{role}: expected a pandas DataFrame, got {type(frame).__name__}")
    check_columns(frame, schema, role)
    if len(frame) < MIN_ROWS[role]:
        raise ValueError(f"{role}: {len(frame)} rows; membership attacks need at least {MIN_ROWS[role]}")


def _sample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Rule 5: all of ``range(n)``, or ``cap`` of them drawn without replacement (sorted)."""
    return np.arange(n) if n <= cap else np.sort(rng.choice(n, size=cap, replace=False))


def _encode(frame: pd.DataFrame, codec: Codec, role: str) -> _Encoded:
    try:
        codes, offsets = codec.encode_codes(frame)
        classes = codec.encode_target(frame)
    except ValueError as exc:  # the codec names the column; say which set of rows
        raise ValueError(f"{role}: {exc}") from exc
    with_offset = [j for j, cc in enumerate(codec.columns) if cc.has_offset]
    present = np.ones(offsets.shape, dtype=bool)
    for k, j in enumerate(with_offset):
        cc = codec.columns[j]
        if cc.nullable:
            present[:, k] = codes[:, j] != cc.missing_code
    return _Encoded(codes, offsets, present, classes)


# -- the latent search (rules 2 and 3) -------------------------------------------------

class _Loss:
    """Rule 2 for one generator and a chunk of targets repeated ``restarts`` times."""

    def __init__(self, model: Model, encoded: _Encoded, restarts: int, device: torch.device) -> None:
        generator = model.generator.to(device)
        self.generator = generator
        sizes = list(generator.config.head_sizes)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        head_of = np.repeat(np.arange(len(sizes)), sizes)  # the head of each logit
        self.head_of = torch.as_tensor(head_of, device=device)
        self.n_heads = len(sizes)
        self.sum_heads = torch.as_tensor(np.eye(len(sizes), dtype=np.float32)[head_of], device=device)
        rep = lambda a: torch.as_tensor(np.tile(a, (restarts,) + (1,) * (a.ndim - 1)), device=device)  # noqa: E731
        self.codes = rep(encoded.codes)
        self.code_index = rep(encoded.codes + starts[None, :])
        self.classes = rep(encoded.classes)
        self.use_offsets = generator.config.offsets == "learned" and generator.config.n_offsets > 0
        if self.use_offsets:
            self.offsets = rep(encoded.offsets.astype(np.float32))
            self.offset_weight = rep(encoded.offset_present.astype(np.float32))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """(targets x restarts,) losses at the latents ``z``."""
        logits, offsets = self.generator(z, self.classes, self.codes)  # each head given the row's codes before it
        with torch.no_grad():  # each head's largest logit: log-sum-exp is exact for any constant shift
            peak = torch.full((len(z), self.n_heads), -math.inf, device=z.device).scatter_reduce(
                1, self.head_of.expand(len(z), -1), logits, "amax")
        log_norm = peak + torch.log(torch.exp(logits - peak[:, self.head_of]) @ self.sum_heads)
        loss = log_norm.sum(1) - logits.gather(1, self.code_index).sum(1)
        if self.use_offsets:
            loss = loss + (self.offset_weight * (offsets - self.offsets) ** 2).sum(1)
        return loss + PRIOR_WEIGHT * 0.5 * (z**2).sum(1)


def _reconstruct(model: Model, encoded: _Encoded, *, restarts: int, steps: int, seed: int,
                 device: torch.device) -> np.ndarray:
    """Rule 3: the lowest loss seen of each target over its starts and steps."""
    latent_dim = model.generator.config.latent_dim
    starts = torch.Generator().manual_seed(seed)
    screen = min(steps, SCREEN_STEPS) if restarts > 1 else 0
    chunk = max(1, _CHUNK_LATENTS // restarts)
    out = np.empty(len(encoded))
    for lo in range(0, len(encoded), chunk):
        part = _Encoded(*(a[lo:lo + chunk] for a in (encoded.codes, encoded.offsets, encoded.offset_present,
                                                      encoded.classes)))
        n = len(part)
        z = torch.randn(restarts * n, latent_dim, generator=starts).to(device)
        best, z = _descend(_Loss(model, part, restarts, device), z, screen)
        pick = best.view(restarts, n).argmin(0)  # each target's best start goes on alone
        rows = pick * n + torch.arange(n, device=device)
        again, _ = _descend(_Loss(model, part, 1, device), z[rows], steps - screen)
        out[lo:lo + n] = torch.minimum(best[rows], again).double().cpu().numpy()
    return out


def _descend(loss_at: _Loss, z: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Adam steps from ``z``: (the lowest loss seen of each latent, the final latents)."""
    z = z.detach().clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=ADAM_LR)
    best = torch.full((len(z),), math.inf, device=z.device)
    with torch.enable_grad():  # also under a caller's no_grad
        for _ in range(steps):
            loss = loss_at(z)
            best = torch.minimum(best, loss.detach())
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
    with torch.no_grad():
        best = torch.minimum(best, loss_at(z))
    return best, z.detach()


def _population_baseline(model: Model, targets: pd.DataFrame, reference: pd.DataFrame, schema: Schema,
                         codec: Codec, *, restarts: int, steps: int, seed: int,
                         device: torch.device) -> np.ndarray:
    """Rule 4: per target, the mean loss of its nearest reference rows under the target generator."""
    losses = _reconstruct(model, _encode(reference, codec, "reference"), restarts=restarts, steps=steps,
                          seed=seed, device=device)
    k = min(CALIBRATION_NEIGHBOURS, len(reference))
    neighbours = NearestNeighbors(n_neighbors=k).fit(attack_features(reference, schema))
    index = neighbours.kneighbors(attack_features(targets, schema), return_distance=False)
    return losses[index].mean(axis=1)


# -- measurements (rule 6) -----------------------------------------------------------

_NOTES = {
    "mia.gan_leaks_wb": "score: minus the reconstruction loss (negative log-likelihood of the row's codes and "
                        "offsets at the best latent, plus the latent's prior term)",
    "mia.gan_leaks_wb_calibrated": "score: minus (the reconstruction loss under the target generator - the "
                                   "baseline)",
}
