"""``hgan demo``: the whole foundation on an embedded real clinical table.

Steps: load flchain with its reviewed schema, hold out 20% (stratified), train
a DP generator on the rest, sample as many synthetic rows, compare real and
synthetic statistics and TSTR utility, and audit the generator (every attack,
the report in ``OUT/report``). The comparison and the audit read the real
rows: a demonstration on public data, not something the appliance releases.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hgan.appliance.data import load_table
from hgan.appliance.engine import Progress, TrainOptions
from hgan.appliance.train import train
from hgan.audit.report import write_report
from hgan.audit.run import audit
from hgan.audit.utility import marginals, stratified_split, tstr
from hgan.release.model import load_model
from hgan.release.sample import sample, write_table
from hgan.release.schema import Schema

TABLE = "flchain"


def demo_file(name: str) -> Path:
    """Path of an embedded file (``flchain.csv``, ``flchain.schema.toml``, ...)."""
    return Path(str(resources.files("hgan.appliance") / "demo_data" / name))


def run_demo(out: Path, *, epsilon: float, seed: int | None,
             progress: Progress | None = None) -> dict:
    """Run the demo into ``out`` (a new directory); return a JSON-safe summary."""
    schema = Schema.load(demo_file(f"{TABLE}.schema.toml"))
    frame = load_table(demo_file(f"{TABLE}.csv"), schema)
    train_rows, holdout = stratified_split(frame, schema, holdout=0.2, seed=seed or 0)
    out.mkdir(parents=True, exist_ok=False)
    result = train(train_rows, schema, out=out / "model",
                   options=TrainOptions(epsilon=epsilon, seed=seed), progress=progress)
    model = load_model(out / "model")
    synthetic = sample(model, len(train_rows), seed=seed)
    write_table(synthetic, out / "synthetic.csv")
    utility = tstr(synthetic, train_rows, holdout, schema, seed=seed or 0)
    report = audit(model_dir=out / "model", train=train_rows, holdout=holdout, schema=schema, seed=seed)
    write_report(report, out / "report")
    audit_summary = report.summary()
    return {
        "table": TABLE, "provenance": "Dispenzieri et al. 2012, R package survival",
        "outcome": schema.target.name, "model_dir": str(out / "model"),
        "synthetic": str(out / "synthetic.csv"), "epsilon": result.epsilon, "delta": result.delta,
        "seconds": result.seconds,
        "steps": [
            f"held out 20% of {TABLE} ({len(holdout)} rows) for evaluation",
            f"trained a generator ({result.engine} engine) on {len(train_rows)} rows in "
            f"{result.seconds:.1f} s; privacy events: "
            + "; ".join(f"{e['purpose']} x{e['count']}" for e in result.events),
            f"sampled {len(synthetic)} synthetic rows -> {out / 'synthetic.csv'}",
            f"audited the generator with {len(report.attacks)} membership attacks and {len(report.risks)} "
            f"re-identification risks in {report.timings['total']:.1f} s -> {out / 'report' / 'report.html'}",
        ],
        "marginals": marginals(train_rows, synthetic, schema),
        "utility": utility,
        "audit": {"report": str(out / "report"), "dp_consistency": audit_summary["dp_consistency"]["status"],
                  "worst_attack": audit_summary["worst_attack"],
                  "max_epsilon_lower_bound": audit_summary["max_epsilon_lower_bound"],
                  "risks": audit_summary["risks"]},
    }
