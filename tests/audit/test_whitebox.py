"""White-box membership inference on the released generator (audit/attacks/whitebox.py).

Positive control: a non-private generator built to memorise its members (one latent per member row, fitted
until G(z_i, y_i) reproduces row i) must be caught. Negative control: a DP generator at epsilon 1 must give
chance AUC and an empirical epsilon below its claim.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from hgan.appliance.data import load_table
from hgan.appliance.engine import TrainOptions
from hgan.appliance.train import train
from hgan.audit.attacks import whitebox
from hgan.audit.attacks.membership import ROC_FPR_GRID
from hgan.audit.attacks.whitebox import ATTACK_IDS, run_whitebox_attacks
from hgan.release.codec import Codec
from hgan.release.generator import Generator, GeneratorConfig
from hgan.release.model import Model, load_model
from hgan.release.schema import Schema
from tests.conftest import DEMO, mixed_frame, mixed_schema

MEMORISED_ROWS = 200
HIDDEN = (128, 128)


def memorising_model(schema: Schema, rows: pd.DataFrame, seed: int, *, latent_dim: int = 16,
                     fit_steps: int = 500, fine_columns: tuple[str, ...] = (), context_dim: int = 0) -> Model:
    """A non-private generator that maps latent z_i (drawn here, never shown to the attack) to row i: the
    heads' cross-entropy and the offsets' squared error of every row at its own latent, minimised by Adam."""
    codec = Codec(schema, fine_columns=fine_columns)
    torch.manual_seed(seed)
    config = GeneratorConfig(latent_dim, HIDDEN, codec.n_classes, tuple(codec.head_sizes), codec.n_offsets,
                             context_dim=context_dim)
    generator = Generator(config)
    codes, offsets = (torch.as_tensor(a) for a in codec.encode_codes(rows))
    y = torch.as_tensor(codec.encode_target(rows))
    z = torch.randn(len(rows), latent_dim, generator=torch.Generator().manual_seed(10_000 + seed))
    optimiser = torch.optim.Adam(generator.parameters(), lr=3e-3)
    for _ in range(fit_steps):
        logits, out = generator(z, y, codes)
        heads = logits.split(list(config.head_sizes), dim=1)
        loss = sum(F.cross_entropy(h, codes[:, j]) for j, h in enumerate(heads)) + ((out - offsets) ** 2).sum(1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    generator.eval()
    privacy = {"private": False, "epsilon": None, "delta": None, "accountant": None, "events": [], "seeded": True}
    return Model(schema, codec, generator, (0.5, 0.5), privacy, {"engine": "memorising-test"})


@pytest.fixture(scope="module")
def mixed_sets():
    return mixed_frame(MEMORISED_ROWS, 1), mixed_frame(MEMORISED_ROWS, 2), mixed_frame(MEMORISED_ROWS, 3)


@pytest.fixture(scope="module")
def memorised(mixed_sets):
    members, _, reference = mixed_sets
    return memorising_model(mixed_schema(), members, 0), memorising_model(mixed_schema(), reference, 1)


@pytest.fixture(scope="module")
def memorised_results(mixed_sets, memorised):
    members, non_members, reference = mixed_sets
    model, reference_model = memorised
    with_reference = run_whitebox_attacks(model, members, non_members, reference, mixed_schema(),
                                          np.random.default_rng(0), reference_model=reference_model, delta=1e-5)
    population = whitebox.gan_leaks_wb_calibrated(model, members, non_members, reference, mixed_schema(),
                                                  np.random.default_rng(0), delta=1e-5)
    return {r.attack_id: r for r in with_reference}, population


@pytest.fixture(scope="module")
def rotterdam_dp(tmp_path_factory):
    """GAN generators at epsilon 1 (DP-SGD), on members and, with the same options, on reference rows."""
    schema = Schema.load(DEMO / "rotterdam.schema.toml")
    table = load_table(DEMO / "rotterdam.csv", schema)
    order = np.random.default_rng(5).permutation(len(table))
    members, non_members, reference = (table.iloc[np.sort(i)].reset_index(drop=True)
                                       for i in np.split(order, [1500, 2200]))
    options = TrainOptions(engine="gan", epsilon=1.0, epochs=3, hidden=(128, 128), seed=0)
    out = tmp_path_factory.mktemp("whitebox")
    train(members, schema, out=out / "target", options=options)
    train(reference, schema, out=out / "reference", options=options)
    model, reference_model = load_model(out / "target"), load_model(out / "reference")
    return schema, members, non_members, reference, model, reference_model


# -- positive control: memorisation is caught --------------------------------------------

def test_memorised_members_are_caught(memorised_results):
    results, population = memorised_results
    plain = results["mia.gan_leaks_wb"]
    assert plain.auc > 0.9
    assert plain.empirical_epsilon.low > 1.0
    assert plain.tpr_at_fpr["0.01"] > 0.2
    # A reference memoriser of other rows adds its own noise, so calibration costs some power here.
    assert results["mia.gan_leaks_wb_calibrated"].auc > 0.75
    assert population.auc > 0.85


def test_a_generator_with_fine_columns_is_attacked_through_its_own_codec(mixed_sets):
    members, non_members, _ = mixed_sets
    model = memorising_model(mixed_schema(), members, 0, fine_columns=("marker", "creat"))
    assert model.codec.head_sizes != Codec(mixed_schema()).head_sizes
    [result] = run_whitebox_attacks(model, members, non_members, None, mixed_schema(), np.random.default_rng(0),
                                    attacks=("mia.gan_leaks_wb",), delta=1e-5)
    assert result.auc > 0.9


def test_a_generator_whose_heads_read_earlier_codes_is_attacked_through_the_row_s_codes(mixed_sets):
    """The loss of a row under an autoregressive generator is its heads' loss given its own codes."""
    members, non_members, _ = mixed_sets
    model = memorising_model(mixed_schema(), members, 0, context_dim=16)
    [result] = run_whitebox_attacks(model, members, non_members, None, mixed_schema(), np.random.default_rng(0),
                                    attacks=("mia.gan_leaks_wb",), delta=1e-5)
    assert result.auc > 0.9


def test_the_latent_search_reduces_the_loss(mixed_sets, memorised):
    """A member's best reconstruction after the search is far below its loss at the random starts."""
    members = mixed_sets[0]
    model = whitebox._checked_model(memorised[0], mixed_schema(), "model")
    encoded = whitebox._encode(members, Codec(mixed_schema()), "members")
    at_start = whitebox._reconstruct(model, encoded, restarts=whitebox.RESTARTS, steps=0, seed=3,
                                     device=torch.device("cpu"))
    searched = whitebox._reconstruct(model, encoded, restarts=whitebox.RESTARTS, steps=whitebox.STEPS, seed=3,
                                     device=torch.device("cpu"))
    assert (searched <= at_start + 1e-6).all()  # the best seen includes the starts
    assert np.median(searched) < 0.2 * np.median(at_start)


# -- negative control: DP at epsilon 1 ------------------------------------------------------

def test_dp_generator_at_epsilon_1_gives_chance_auc_and_no_epsilon_above_its_claim(rotterdam_dp):
    schema, members, non_members, reference, model, reference_model = rotterdam_dp
    claimed = model.privacy["epsilon"]
    assert model.privacy["private"] and claimed <= 1.0
    results = run_whitebox_attacks(model, members, non_members, reference, schema, np.random.default_rng(0),
                                   reference_model=reference_model, delta=model.privacy["delta"],
                                   max_targets=400)
    population = whitebox.gan_leaks_wb_calibrated(model, members, non_members, reference, schema,
                                                  np.random.default_rng(0), delta=model.privacy["delta"],
                                                  max_targets=400)
    for result in results + [population]:
        assert abs(result.auc - 0.5) < 0.1, result.attack_id
        assert result.empirical_epsilon.low < min(1.0, claimed), result.attack_id
        assert (result.n_members, result.n_non_members) == (400, 400)


# -- the results: aggregates only, reproducible, saying what they used -------------------------

def test_results_hold_aggregates_only(mixed_sets, memorised_results):
    members = mixed_sets[0]
    results, population = memorised_results
    text = json.dumps([r.to_dict() for r in [*results.values(), population]], allow_nan=False)
    fractional = [v for c in ("marker", "creat") for v in members[c].dropna() if not float(v).is_integer()]
    assert len(fractional) > 100
    assert not [v for v in fractional if repr(float(v)) in text]
    for result in [*results.values(), population]:
        assert result.roc_fpr == ROC_FPR_GRID and len(result.roc_tpr) == len(ROC_FPR_GRID)
        assert set(result.to_dict()) == {"attack_id", "auc", "tpr_at_fpr", "empirical_epsilon", "counts", "roc",
                                         "n_members", "n_non_members", "n_reference", "n_synthetic", "notes"}
        assert sum(result.counts.values()) == MEMORISED_ROWS  # the evaluation half of 200 + 200 targets
        for value in vars(result).values():
            assert not isinstance(value, (np.ndarray, pd.DataFrame, pd.Series, list, torch.Tensor))


def test_results_say_which_baseline_calibrated_them(memorised_results):
    results, population = memorised_results
    assert "reference generator of the same engine" in results["mia.gan_leaks_wb_calibrated"].notes
    assert "no reference generator given" in population.notes
    for result in [*results.values(), population]:
        assert "training rows" in result.notes and "holdout rows never used in training" in result.notes
        assert (result.n_members, result.n_non_members, result.n_reference, result.n_synthetic) == \
            (MEMORISED_ROWS, MEMORISED_ROWS, MEMORISED_ROWS, 0)


def test_seeded_runs_reproduce_and_single_attacks_match_the_full_run(mixed_sets, memorised):
    members, non_members, reference = mixed_sets
    model, reference_model = memorised
    small = {"max_targets": 60, "restarts": 2, "steps": 20, "delta": 1e-5}
    runs = [run_whitebox_attacks(model, members, non_members, reference, mixed_schema(), np.random.default_rng(4),
                                 reference_model=reference_model, **small) for _ in range(2)]
    assert [r.to_dict() for r in runs[0]] == [r.to_dict() for r in runs[1]]
    alone = whitebox.gan_leaks_wb(model, members, non_members, mixed_schema(), np.random.default_rng(4), **small)
    figures = lambda r: {k: v for k, v in r.to_dict().items() if k not in ("n_reference", "notes")}  # noqa: E731
    assert figures(alone) == figures(runs[0][0])  # alone, it used no reference rows
    other_seed = whitebox.gan_leaks_wb(model, members, non_members, mixed_schema(), np.random.default_rng(5),
                                       **small)
    assert other_seed.to_dict() != alone.to_dict()  # the seed does reach the draws


def test_targets_are_capped_and_the_models_left_unchanged(mixed_sets, memorised):
    members, non_members, _ = mixed_sets
    model = memorised[0]
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    result = whitebox.gan_leaks_wb(model, members, non_members, mixed_schema(), np.random.default_rng(1),
                                   max_targets=50, restarts=2, steps=5)
    assert (result.n_members, result.n_non_members) == (50, 50)
    assert f"50 of {MEMORISED_ROWS} training rows" in result.notes
    after = model.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.generator.parameters())


# -- bad inputs (rules 1 and 7) -------------------------------------------------------------

def test_a_model_of_another_schema_is_refused(mixed_sets, rotterdam_dp):
    members, non_members, _ = mixed_sets
    rotterdam_model = rotterdam_dp[4]
    with pytest.raises(ValueError, match="model: its codec does not match the targets' schema"):
        whitebox.gan_leaks_wb(rotterdam_model, members, non_members, mixed_schema(), np.random.default_rng(0))


def test_a_model_with_other_bounds_is_refused_by_column(mixed_sets, memorised):
    members, non_members, _ = mixed_sets
    raw = mixed_schema().to_dict()
    next(c for c in raw["columns"] if c["name"] == "creat")["upper"] = 20.0
    other = Schema.from_dict(raw)
    with pytest.raises(ValueError, match="column 'creat' is encoded differently"):
        whitebox.gan_leaks_wb(memorised[0], members, non_members, other, np.random.default_rng(0))


def test_a_reference_generator_of_another_engine_is_refused(rotterdam_dp):
    schema, members, non_members, reference, model, _ = rotterdam_dp
    stranger = memorising_model(schema, reference.iloc[:20], 2, fit_steps=1)
    with pytest.raises(ValueError, match="reference_model: engine 'memorising-test'"):
        whitebox.gan_leaks_wb_calibrated(model, members, non_members, reference, schema, np.random.default_rng(0),
                                         reference_model=stranger)


def test_unknown_ids_missing_reference_few_rows_and_unseeded_rng_are_refused(mixed_sets, memorised):
    members, non_members, reference = mixed_sets
    model = memorised[0]
    with pytest.raises(ValueError, match="mia.nope"):
        run_whitebox_attacks(model, members, non_members, reference, mixed_schema(), np.random.default_rng(0),
                             attacks=("mia.gan_leaks_wb", "mia.nope"))
    with pytest.raises(ValueError, match="reference: .*needs a reference generator"):
        whitebox.gan_leaks_wb_calibrated(model, members, non_members, None, mixed_schema(),
                                         np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-members: 1 rows"):
        whitebox.gan_leaks_wb(model, members, non_members.iloc[:1], mixed_schema(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"members: columns differ.*unexpected: \['pid'\]"):
        whitebox.gan_leaks_wb(model, members.assign(pid=1), non_members, mixed_schema(), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        whitebox.gan_leaks_wb(model, members, non_members, mixed_schema(), 0)
    with pytest.raises(TypeError, match="Model"):
        whitebox.gan_leaks_wb(model.generator, members, non_members, mixed_schema(), np.random.default_rng(0))
    assert ATTACK_IDS == ("mia.gan_leaks_wb", "mia.gan_leaks_wb_calibrated")


def test_rule1_a_reference_generator_must_use_its_offset_head_as_the_target_does():
    """"uniform" and "table" offsets both ignore the latent, so they pair; "learned" does not."""
    schema = mixed_schema()
    codec = Codec(schema)

    def model(offsets):
        extra = {"offset_heads": tuple(codec.offset_heads), "offset_cells": 4} if offsets == "table" else {}
        config = GeneratorConfig(8, (16,), codec.n_classes, tuple(codec.head_sizes), codec.n_offsets, offsets, **extra)
        return Model(schema, codec, Generator(config), (0.5, 0.5), {}, {"engine": "marginal-mlp"})

    whitebox._check_same_family(model("table"), model("uniform"))
    with pytest.raises(ValueError, match="reference_model"):
        whitebox._check_same_family(model("learned"), model("uniform"))
