"""Training engine: privacy plan, model contents, reproducibility, refusals."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from hgan.appliance import marginal
from hgan.appliance.accounting import PrivacyEvent, epsilon
from hgan.appliance.engine import TrainOptions, default_delta, histogram_noise
from hgan.appliance.train import train
from hgan.release.errors import InvalidInput
from hgan.release.model import METADATA, WEIGHTS, load_model
from hgan.release.schema import Schema
from tests.conftest import mixed_frame, mixed_schema

FAST = dict(engine="gan", epochs=2, batch_size=64, hidden=(32,), latent_dim=8)


@pytest.fixture(params=["gan", "marginal"])
def engine(request, monkeypatch):
    """Run a test with each engine; the marginal engine's fitting is shortened."""
    monkeypatch.setattr(marginal, "FIT_STEPS_PER_ROUND", 5)
    monkeypatch.setattr(marginal, "FIT_STEPS_FINAL", 50)
    return request.param


def fit(tmp_path, name="m", frame=None, **kw):
    options = TrainOptions(**{"epsilon": 2.0, "seed": 3, **FAST, **kw})
    return train(frame if frame is not None else mixed_frame(400), mixed_schema(),
                 out=tmp_path / name, options=options)


def test_reported_epsilon_is_the_composition_of_the_listed_events(tmp_path, engine):
    result = fit(tmp_path, engine=engine)
    events = [PrivacyEvent.from_dict(e) for e in result.events]
    assert events[0].kind == "gaussian" and events[0].purpose == "target histogram"
    assert events[0].noise_multiplier == histogram_noise(2.0)
    recomputed = epsilon(events, result.delta)
    assert result.epsilon == pytest.approx(recomputed, abs=1e-6)
    assert recomputed <= 2.0
    assert json.loads((tmp_path / "m" / METADATA).read_text())["privacy"]["events"] == result.events


def test_gan_events_are_the_histogram_and_the_dpsgd_steps(tmp_path):
    result = fit(tmp_path)
    events = [PrivacyEvent.from_dict(e) for e in result.events]
    assert [e.kind for e in events] == ["gaussian", "subsampled_gaussian"]
    assert events[0].noise_multiplier == histogram_noise(2.0)
    dpsgd = events[1]
    assert dpsgd.count == result.steps == math.ceil(2 / result.sample_rate)
    assert dpsgd.noise_multiplier == result.noise_multiplier


def test_marginal_events_are_histogram_workload_selections_and_measurements(tmp_path, engine):
    result = fit(tmp_path, engine="marginal")
    events = [PrivacyEvent.from_dict(e) for e in result.events]
    assert [(e.kind, e.count) for e in events] == [
        ("gaussian", 1), ("gaussian", 7), ("exponential", 14), ("gaussian", 14)]
    meta = json.loads((tmp_path / "m" / METADATA).read_text())
    assert meta["engine"] == "marginal-mlp" and meta["architecture"]["offsets"] == "uniform"
    assert len(meta["training"]["measured"]) == 7 + 14


def test_model_directory_holds_no_exact_count(tmp_path, engine):
    frame = mixed_frame(400)
    result = fit(tmp_path, frame=frame, engine=engine)
    text = (tmp_path / "m" / METADATA).read_text()
    exact = {len(frame)} | {int(v) for v in frame["death"].value_counts()}
    numbers = {float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)}
    assert not exact & {n for n in numbers if n.is_integer()}
    meta = json.loads(text)
    if result.sample_rate is not None:
        n_implied = 64 / result.sample_rate
        assert n_implied != pytest.approx(len(frame), abs=0.5)  # the rate derives from a noisy count
    for p, count in zip(meta["class_prior"], frame["death"].value_counts(sort=False)):
        assert p != pytest.approx(count / len(frame), abs=1e-9)
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == [METADATA, WEIGHTS]


def test_seeded_run_is_reproducible(tmp_path, engine):
    fit(tmp_path, "a", engine=engine)
    fit(tmp_path, "b", engine=engine)
    assert (tmp_path / "a" / WEIGHTS).read_bytes() == (tmp_path / "b" / WEIGHTS).read_bytes()
    c = fit(tmp_path, "c", seed=4, engine=engine)
    assert (tmp_path / "a" / WEIGHTS).read_bytes() != (tmp_path / "c" / WEIGHTS).read_bytes()
    assert json.loads((tmp_path / "a" / METADATA).read_text())["privacy"]["seeded"] is True
    assert c.private


def test_no_dp_is_marked_non_private_everywhere(tmp_path, engine):
    result = fit(tmp_path, epsilon=None, dp=False, engine=engine)
    assert not result.private and result.epsilon is None and result.events == []
    model = load_model(tmp_path / "m")
    assert model.privacy["private"] is False and model.privacy["epsilon"] is None


def test_draft_schema_is_refused(tmp_path):
    raw = mixed_schema().to_dict()
    raw["draft"] = True
    with pytest.raises(InvalidInput) as err:
        train(mixed_frame(50), Schema.from_dict(raw), out=tmp_path / "m", options=TrainOptions(**FAST))
    assert err.value.code == "schema.draft"
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kw", [dict(epsilon=0.0), dict(epsilon=None), dict(epochs=0),
                                dict(delta=0.5), dict(device="tpu")])
def test_bad_options_are_input_errors(tmp_path, kw):
    with pytest.raises(InvalidInput) as err:
        fit(tmp_path, **kw)
    assert err.value.code == "train.options"


def test_default_delta_is_well_below_one_over_n():
    for n in (50, 3000, 9999, 10_001, 250_000):
        assert default_delta(n) <= 0.01 / n
    assert default_delta(3000) == 1e-6


def test_trained_generator_samples_valid_rows_of_every_class(tmp_path, engine):
    from hgan.release.sample import sample

    fit(tmp_path, engine=engine)
    out = sample(load_model(tmp_path / "m"), 500, ratio={"0": 1, "1": 1}, seed=0)
    assert (out["death"] == 1).sum() == 250
    assert out["age"].between(18, 100).all() and out["marker"].between(0, 5000).all()


def test_training_does_not_change_torch_global_thread_settings(tmp_path):
    before = torch.get_num_threads()
    fit(tmp_path)
    assert torch.get_num_threads() == before


def test_progress_reports_each_epoch_with_epsilon_growing_to_the_total(tmp_path):
    reports = []
    options = TrainOptions(epsilon=2.0, seed=3, **{**FAST, "epochs": 3})
    result = train(mixed_frame(400), mixed_schema(), out=tmp_path / "m", options=options,
                   progress=reports.append)
    assert [(r.phase, r.done, r.total) for r in reports] == [("epoch", 1, 3), ("epoch", 2, 3), ("epoch", 3, 3)]
    assert reports[-1].detail.startswith(f"step {result.steps}/{result.steps}")
    eps = [r.epsilon for r in reports]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(result.epsilon, abs=1e-5)
