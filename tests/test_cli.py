"""The `hgan` command: exit statuses, JSON output, no tracebacks, no patient values."""

from __future__ import annotations

import json

import pytest

from hgan.cli import run
from tests.conftest import DEMO


@pytest.mark.parametrize("engine", ["gan", "marginal"])
def test_train_then_sample_with_json(tmp_path, capsys, monkeypatch, engine):
    from hgan.appliance import marginal

    monkeypatch.setattr(marginal, "FIT_STEPS_PER_ROUND", 5)
    monkeypatch.setattr(marginal, "FIT_STEPS_FINAL", 50)
    rc = run(["train", str(DEMO / "rotterdam.csv"), "--schema", str(DEMO / "rotterdam.schema.toml"),
              "--engine", engine, "--epsilon", "3", "--epochs", "1", "--out", str(tmp_path / "m"),
              "--seed", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "max_grad_norm",
                "accountant", "epochs", "rows", "seconds", "model_dir"):
        assert key in out
    assert out["rows"] == 2982 and out["epsilon"] <= 3 and out["engine"] == engine
    rc = run(["sample", str(tmp_path / "m"), "-n", "100", "--out", str(tmp_path / "s.csv"),
              "--where", "death=1", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["classes"] == {"0": 0, "1": 100}


def test_input_error_exits_2_with_code_and_no_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text((DEMO / "rotterdam.csv").read_text().replace(",74,", ",123456,", 1))
    rc = run(["train", str(bad), "--schema", str(DEMO / "rotterdam.schema.toml"), "--epsilon", "1",
              "--out", str(tmp_path / "m"), "--json"])
    captured = capsys.readouterr()
    assert rc == 2
    assert json.loads(captured.out)["error"] == "data.bounds"
    assert "age" in captured.err and "Traceback" not in captured.err
    assert "123456" not in captured.out + captured.err
    assert not (tmp_path / "m").exists()


def test_usage_error_exits_2(capsys):
    assert run(["train"]) == 2
    assert run(["sample", "x", "-n", "notanumber", "--out", "y.csv"]) == 2


def test_draft_schema_refused_before_reading_data(tmp_path, capsys):
    schema = tmp_path / "s.toml"
    schema.write_text((DEMO / "rotterdam.schema.toml").read_text().replace(
        'format = "hgan-schema/1"', 'format = "hgan-schema/1"\ndraft = true'))
    rc = run(["train", str(tmp_path / "missing.csv"), "--schema", str(schema), "--epsilon", "1",
              "--out", str(tmp_path / "m")])
    assert rc == 2 and "schema.draft" in capsys.readouterr().err


def test_internal_error_says_nothing_released(monkeypatch, capsys, tmp_path):
    import hgan.release.cli as release_cli

    def boom(*a, **k):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(release_cli, "load_model", boom)
    rc = run(["sample", str(tmp_path), "-n", "5", "--out", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and "internal error, nothing released" in err and "Traceback" not in err


@pytest.mark.parametrize("args", [["--where", "death=1", "--ratio", "0=1"], ["--ratio", "0=x"],
                                  ["--where", "death"]])
def test_bad_sampling_options_exit_2(tmp_path, capsys, args):
    from tests.release.test_model import write

    write(tmp_path / "m")
    assert run(["sample", str(tmp_path / "m"), "-n", "5", "--out", str(tmp_path / "s.csv"), *args]) == 2


def test_demo_trains_samples_and_audits(tmp_path, capsys, monkeypatch):
    from hgan.appliance import marginal

    monkeypatch.setattr(marginal, "FIT_STEPS_PER_ROUND", 5)
    monkeypatch.setattr(marginal, "FIT_STEPS_FINAL", 50)
    rc = run(["demo", "--out", str(tmp_path / "d"), "--seed", "0", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["table"] == "flchain"
    assert 0 < summary["epsilon"] <= 3.0 and summary["delta"] < 1 / 7874
    assert (tmp_path / "d" / "model" / "generator.safetensors").is_file()
    assert sum(1 for _ in open(tmp_path / "d" / "synthetic.csv")) == 6299 + 1  # as many rows as trained on
    assert (tmp_path / "d" / "report" / "report.html").is_file()
    assert summary["audit"]["dp_consistency"] == "consistent"
    assert summary["utility"]["ratio"] > 0.6
