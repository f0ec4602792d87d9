"""The audit facade: a DP model passes the DP consistency check, a copy of the training rows breaks it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hgan.appliance import marginal
from hgan.appliance.data import load_table
from hgan.appliance.engine import TrainOptions
from hgan.appliance.train import train as train_model
from hgan.audit.report import HTML_NAME, JSON_NAME
from hgan.audit.run import audit
from hgan.audit.utility import stratified_split
from hgan.cli import run
from hgan.release.errors import InvalidInput
from hgan.release.schema import Schema
from tests.conftest import DEMO


@pytest.fixture(scope="module")
def rotterdam():
    schema = Schema.load(DEMO / "rotterdam.schema.toml")
    frame = load_table(DEMO / "rotterdam.csv", schema)
    train, holdout = stratified_split(frame, schema, holdout=0.2, seed=0)
    return schema, train, holdout


def test_dp_model_at_epsilon_1_passes_the_dp_consistency_check(rotterdam, tmp_path, monkeypatch):
    monkeypatch.setattr(marginal, "FIT_STEPS_PER_ROUND", 5)
    monkeypatch.setattr(marginal, "FIT_STEPS_FINAL", 50)
    schema, train, holdout = rotterdam
    train_model(train, schema, out=tmp_path / "m", options=TrainOptions(engine="marginal", epsilon=1.0, seed=0))
    steps = []
    report = audit(model_dir=tmp_path / "m", train=train, holdout=holdout, schema=schema, seed=0,
                   progress=lambda step, done, total: steps.append(step))
    assert report.dp_consistency["status"] == "consistent", report.dp_consistency
    assert report.verdict_inputs["private"] and report.verdict_inputs["epsilon"] <= 1.0
    assert report.verdict_inputs["engine"].startswith("marginal")
    ids = [a["attack_id"] for a in report.attacks]
    assert "mia.dcr" in ids and "mia.gan_leaks_wb_calibrated" in ids
    assert "whitebox" in steps and steps[-1] == "done"
    assert report.data["non_members"] == report.data["reference"] == len(holdout) // 2
    assert report.data["members"] == report.data["synthetic"] == len(train)
    assert report.source["weights_sha256"] and report.utility["tstr"]["ratio"] > 0
    assert all(a["auc"] < 0.7 for a in report.attacks)
    exact = report.copies["exact"]
    assert exact["members_reproduced"] <= exact["non_members_reproduced"] + 0.05
    assert {"fidelity", "association", "per_class", "detection_auc"} <= set(report.utility)
    assert [r["class"] for r in report.utility["per_class"]] == list(schema.target.categories)


def test_copy_of_training_rows_breaks_the_dp_consistency_check(rotterdam):
    schema, train, holdout = rotterdam
    report = audit(synthetic=train.copy(), train=train, holdout=holdout, schema=schema, seed=0,
                   claimed_epsilon=1.0, claimed_delta=1e-6)
    assert report.dp_consistency["status"] == "broken"
    broken = {b["attack_id"] for b in report.dp_consistency["broken_attacks"]}
    assert "mia.dcr" in broken
    assert report.copies["exact"]["members_reproduced"] == 1.0
    risks = {r["attack_id"]: r["risk"] for r in report.risks}
    assert risks["risk.singling_out.univariate"]["low"] > 0  # weak at 4:1 sizes: see singling_out rule 3
    assert risks["risk.linkability"]["low"] > 0.5
    assert report.copies["exact"]["non_members_reproduced"] < 0.05
    assert max(a["auc"] for a in report.attacks) > 0.95
    assert not any(a["attack_id"].startswith("mia.gan_leaks") for a in report.attacks)  # black-box only


def test_synthetic_without_claim_is_not_applicable(rotterdam):
    schema, train, holdout = rotterdam
    report = audit(synthetic=holdout.copy(), train=train.iloc[:600], holdout=holdout, schema=schema, seed=0)
    assert report.dp_consistency["status"].startswith("not applicable")


def test_exactly_one_of_model_and_synthetic(rotterdam, tmp_path):
    schema, train, holdout = rotterdam
    with pytest.raises(InvalidInput) as exc:
        audit(train=train, holdout=holdout, schema=schema, seed=0)
    assert exc.value.code == "audit.inputs"
    with pytest.raises(InvalidInput) as exc:
        audit(model_dir=tmp_path, synthetic=train, train=train, holdout=holdout, schema=schema, seed=0)
    assert exc.value.code == "audit.inputs"


# -- the CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def csvs(tmp_path_factory):
    """rotterdam as text: train (1500 rows), holdout (600), independent rows (800), train copy."""
    d = tmp_path_factory.mktemp("csv")
    raw = pd.read_csv(DEMO / "rotterdam.csv", dtype=str, keep_default_na=False)
    raw = raw.iloc[np.random.default_rng(0).permutation(len(raw))]
    parts = {"train": raw.iloc[:1500], "holdout": raw.iloc[1500:2100], "independent": raw.iloc[2100:2900]}
    for name, part in parts.items():
        part.to_csv(d / f"{name}.csv", index=False)
    return d


def _audit_args(d, out, synthetic, *extra):
    return ["audit", "--train", str(d / "train.csv"), "--holdout", str(d / "holdout.csv"), "--schema",
            str(DEMO / "rotterdam.schema.toml"), "--out", str(out), "--synthetic", str(d / synthetic),
            "--seed", "0", *extra]


def test_cli_exit_1_when_broken_with_report_written(csvs, tmp_path, capsys):
    rc = run(_audit_args(csvs, tmp_path / "r", "train.csv", "--claimed-epsilon", "1", "--json"))
    summary = json.loads(capsys.readouterr().out)
    assert rc == 1 and summary["dp_consistency"]["status"] == "broken"
    assert (tmp_path / "r" / JSON_NAME).is_file() and (tmp_path / "r" / HTML_NAME).is_file()


def test_cli_exit_0_when_consistent(csvs, tmp_path, capsys):
    rc = run(_audit_args(csvs, tmp_path / "r", "independent.csv", "--claimed-epsilon", "1", "--json"))
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["dp_consistency"]["status"] == "consistent"


def test_cli_exit_2_on_bad_input_and_existing_output(csvs, tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep")
    assert run(_audit_args(csvs, tmp_path / "r", "train.csv")) == 2
    assert "output.exists" in capsys.readouterr().err
    assert (tmp_path / "r" / "x").read_text() == "keep"
    assert run(["audit", str(tmp_path), *_audit_args(csvs, tmp_path / "r2", "train.csv")[1:]]) == 2
    assert "audit.inputs" in capsys.readouterr().err
    assert run(["audit", "--train", "x.csv"]) == 2  # usage error


def test_noisy_copies_fail_the_check_and_show_risks_while_independent_rows_do_not(rotterdam):
    from tests.audit.test_membership import noisy_copies

    schema, train, holdout = rotterdam
    leaky = audit(synthetic=noisy_copies(train, schema, seed=1), train=train, holdout=holdout, schema=schema,
                  seed=0, claimed_epsilon=0.5, claimed_delta=1e-6)
    assert leaky.dp_consistency["status"] == "broken"
    assert max(a["empirical_epsilon"]["low"] or 99 for a in leaky.attacks) > 2.0
    risks = {r["attack_id"]: r for r in leaky.risks}
    assert risks["risk.linkability"]["risk"]["low"] > 0.05
    # the other half of rotterdam, never trained on, as the "synthetic" rows: nothing to find
    members, independent = train.iloc[:1000], train.iloc[1000:2000]
    clean = audit(synthetic=independent, train=members, holdout=holdout, schema=schema, seed=0,
                  claimed_epsilon=0.5, claimed_delta=1e-6)
    assert clean.dp_consistency["status"] == "consistent"
    assert all(abs(a["auc"] - 0.5) < 0.06 for a in clean.attacks)
    assert all(r["risk"]["low"] < 0.05 for r in clean.risks if "risk" in r)


def _attack(advantage: float, n: int, eps_low: float | None = 0.0) -> dict:
    return {"attack_id": "mia.dcr", "roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.5 + advantage, 1.0]},
            "empirical_epsilon": {"low": eps_low}, "n_members": n, "n_non_members": n}


def test_advantage_check_allows_sampling_noise_but_not_a_real_excess():
    from hgan.audit.run import _dp_consistency, advantage_slack

    claim = {"private": True, "epsilon": 0.1, "delta": 1e-6, "engine": "marginal-mlp"}
    # allowed at epsilon 0.1: (e^0.1 - 1) / (e^0.1 + 1) = 0.050; 800 targets each: slack 0.104
    assert advantage_slack(800, 800) == pytest.approx(2 * np.sqrt(np.log(80) / 1600))
    assert _dp_consistency([_attack(0.09, 800)], claim)["status"] == "consistent"
    broken = _dp_consistency([_attack(0.20, 800)], claim)
    assert broken["status"] == "broken" and "advantage 0.200" in broken["broken_attacks"][0]["reasons"][0]
    assert _dp_consistency([_attack(0.09, 100_000)], claim)["status"] == "broken"  # many targets: no slack left
    assert _dp_consistency([_attack(0.0, 800, eps_low=0.3)], claim)["status"] == "broken"  # the bound alone
