"""``hgan audit``: parse, call ``audit.run.audit``, write the report, render a summary.

Exit status: 0 when the DP consistency check passes (or does not apply), 1
when it says "broken", 2 for bad input (``hgan.cli`` maps ``InvalidInput``).
Progress goes to stderr; the summary table, or ``--json``, to stdout.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import click

from hgan import console
from hgan.release.errors import InvalidInput


@click.command()
@click.argument("model_dir", required=False, type=click.Path())
@click.option("--train", "train_path", required=True, type=click.Path(), help="The training rows (CSV).")
@click.option("--holdout", "holdout_path", required=True, type=click.Path(),
              help="Rows held out of training (CSV); half become non-members, half reference data.")
@click.option("--schema", "schema_path", required=True, type=click.Path(), help="The reviewed schema (TOML).")
@click.option("--out", required=True, type=click.Path(), help="New directory for report.json and report.html.")
@click.option("--synthetic", "synthetic_path", default=None, type=click.Path(),
              help="Audit this synthetic table (CSV) instead of a model: black-box attacks only.")
@click.option("--claimed-epsilon", type=float, default=None,
              help="With --synthetic: the epsilon the table's maker claims (enables the DP consistency check).")
@click.option("--claimed-delta", type=float, default=0.0, show_default=True, help="With --claimed-epsilon.")
@click.option("--seed", type=int, default=None, help="Seed of every random draw (default: random, recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the report's summary as one JSON object.")
def audit(model_dir: str | None, train_path: str, holdout_path: str, schema_path: str, out: str,
          synthetic_path: str | None, claimed_epsilon: float | None, claimed_delta: float, seed: int | None,
          as_json: bool) -> int:
    """Attack MODEL_DIR (or --synthetic rows) and write a privacy and utility report."""
    from hgan.appliance.data import load_table
    from hgan.appliance.train import require_reviewed
    from hgan.audit.report import check_output, write_report
    from hgan.audit.run import audit as run_audit
    from hgan.release.schema import Schema

    if (model_dir is None) == (synthetic_path is None):
        raise InvalidInput("audit.inputs", "give exactly one of MODEL_DIR and --synthetic",
                           hint="hgan audit model/ ... or hgan audit --synthetic synthetic.csv ...")
    if claimed_epsilon is not None and synthetic_path is None:
        raise InvalidInput("audit.inputs", "--claimed-epsilon is for --synthetic audits only",
                           hint="a model's epsilon is read from its metadata")
    check_output(out)  # before any work
    schema = Schema.load(schema_path)
    require_reviewed(schema)
    train = load_table(train_path, schema)
    holdout = load_table(holdout_path, schema)
    synthetic = load_table(synthetic_path, schema) if synthetic_path is not None else None
    with _progress(quiet=as_json) as on_step:
        report = run_audit(model_dir=model_dir, synthetic=synthetic, train=train, holdout=holdout, schema=schema,
                           seed=seed, claimed_epsilon=claimed_epsilon, claimed_delta=claimed_delta,
                           progress=on_step)
    written = write_report(report, out)
    summary = report.summary()
    if as_json:
        console.emit_json({**summary, "out": str(written)})
    else:
        _render(summary, str(written))
    if report.broken:
        console.err.print("[red]DP consistency check: broken: an attack beats the claimed privacy[/red]")
        return 1
    return 0


@contextmanager
def _progress(*, quiet: bool) -> Iterator:
    """A rich progress display on stderr naming the attack that runs."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("[bold]audit"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[step]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console.err, transient=False) as bar:
        task = bar.add_task("audit", total=None, step="preparing")

        def on_step(step: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, step=step)

        yield on_step


def _render(summary: dict, out: str) -> None:
    def f(x: object) -> str:
        return "unbounded" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    rows = [["DP consistency", summary["dp_consistency"]["status"]]]
    rows += [[f"broken: {b['attack_id']}", "; ".join(b["reasons"])] for b in summary["dp_consistency"]["broken_attacks"]]
    rows += [[f"{a['attack_id']} AUC / eps low", f"{f(a['auc'])} / {f(a['epsilon_low'])}"] for a in summary["attacks"]]
    rows += [[r["attack_id"], f"{f(r['risk']['value'])} [{f(r['risk']['low'])}, {f(r['risk']['high'])}]"
              if "risk" in r else "skipped"] for r in summary["risks"]]
    copies = summary["exact_copies"]
    rows += [["training rows reproduced / never-seen rows reproduced",
              f"{f(copies.get('members_reproduced'))} / {f(copies.get('non_members_reproduced'))}"]]
    interval = summary["tstr_ratio_interval"]
    rows += [["TSTR ratio [95% over holdout resamples]",
              f(summary["tstr_ratio"]) + ("" if interval is None else f" [{f(interval[0])}, {f(interval[1])}]")], ["detection AUC", f(summary["detection_auc"])],
             ["two-way TVD", f(summary["tvd_2way"])],
             ["association difference (mean)", f(summary["association_mean_abs_difference"])],
             ["seconds", f(summary["seconds"])], ["report", out]]
    console.table("Audit", ["figure", "value"], rows)
