"""Hospital-side commands: ``schema draft``, ``train`` and ``demo``."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hgan import console
from hgan.appliance.data import load_table
from hgan.appliance.draft import draft_schema, render_draft
from hgan.appliance.engine import ENGINES, ProgressReport, TrainOptions
from hgan.appliance.train import TrainResult, require_reviewed
from hgan.appliance.train import train as train_model
from hgan.release.errors import InvalidInput
from hgan.release.schema import Schema

DEMO_EPSILON = 3.0


@click.group()
def schema() -> None:
    """Write and check schemas (public column metadata)."""


@schema.command("draft")
@click.argument("data", type=click.Path(dir_okay=False, path_type=str))
@click.option("--target", default=None, help="The outcome column (categorical).")
@click.option("--id", "ids", multiple=True, help="An identifier column (never modelled). Repeatable.")
@click.option("--drop", "drops", multiple=True, help="A column to leave out. Repeatable.")
@click.option("--out", default=None, help="Write the draft here instead of stdout (never overwritten).")
def schema_draft(data: str, target: str | None, ids: tuple[str, ...], drops: tuple[str, ...],
                 out: str | None) -> None:
    """Draft a schema from DATA: to be REVIEWED against public knowledge before training."""
    draft = draft_schema(data, target=target, id_columns=ids, drop_columns=drops)
    text = render_draft(draft, source_name=Path(data).name)
    if out:
        if Path(out).exists():
            raise InvalidInput("output.exists", f"{out}: already exists", hint="choose a new --out path")
        Path(out).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
    console.err.print(
        "[bold yellow]WARNING:[/] this draft was computed FROM THE DATA. Review every bound and "
        "category list against public knowledge, then delete the line `draft = true`. "
        "`hgan train` refuses drafts.")


@click.command()
@click.argument("data", type=click.Path(dir_okay=False, path_type=str))
@click.option("--schema", "schema_path", required=True, help="The reviewed schema (TOML).")
@click.option("--epsilon", type=float, default=None, help="Target privacy budget (required unless --no-dp).")
@click.option("--delta", type=float, default=None, help="Default: 1e-6, or 0.01/n for tables over 10,000 rows.")
@click.option("--out", required=True, help="New model directory (never overwritten).")
@click.option("--engine", type=click.Choice(ENGINES), default=TrainOptions.engine, show_default=True,
              help="marginal: generator fitted to DP-measured marginals; gan: the DP-SGD AC-GAN.")
@click.option("--epochs", type=int, default=TrainOptions.epochs, show_default=True, help="GAN engine only.")
@click.option("--batch-size", type=int, default=TrainOptions.batch_size, show_default=True,
              help="GAN engine only: expected number of real rows per DP-SGD step.")
@click.option("--seed", type=int, default=None, help="Seed (tests and benchmarks; marks the model as seeded).")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--no-dp", is_flag=True, help="Train WITHOUT privacy (baselines only; never releasable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def train(data: str, schema_path: str, epsilon: float | None, delta: float | None, out: str, engine: str,
          epochs: int, batch_size: int, seed: int | None, device: str, no_dp: bool, as_json: bool) -> None:
    """Train a differentially private generator on DATA."""
    if no_dp and epsilon is not None:
        raise InvalidInput("train.options", "--epsilon and --no-dp exclude each other",
                           hint="drop --epsilon for a non-private baseline")
    if not no_dp and epsilon is None:
        raise InvalidInput("train.options", "--epsilon is required", hint="e.g. --epsilon 3")
    sch = Schema.load(schema_path)
    require_reviewed(sch)  # before reading any data
    options = TrainOptions(engine=engine, epsilon=epsilon, delta=delta, epochs=epochs, batch_size=batch_size,
                           seed=seed, device=device, dp=not no_dp)
    options.check()
    frame = load_table(data, sch)
    with _progress(quiet=as_json) as on_epoch:
        result = train_model(frame, sch, out=out, options=options, progress=on_epoch)
    _report(result, as_json)


@click.command()
@click.option("--out", default=None, help="Output directory (default: ./hgan-demo-TIMESTAMP).")
@click.option("--epsilon", type=float, default=DEMO_EPSILON, show_default=True)
@click.option("--seed", type=int, default=None)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def demo(out: str | None, epsilon: float, seed: int | None, as_json: bool) -> None:
    """Train on an embedded real clinical table (flchain), sample synthetic patients, audit the generator."""
    from hgan.appliance.demo import run_demo

    out_dir = Path(out or f"hgan-demo-{time.strftime('%Y%m%d-%H%M%S')}")
    with _progress(quiet=as_json) as on_epoch:
        summary = run_demo(out_dir, epsilon=epsilon, seed=seed, progress=on_epoch)
    if as_json:
        console.emit_json(summary)
        return
    _report_demo(summary)


@contextmanager
def _progress(*, quiet: bool) -> Iterator:
    """A rich progress bar on stderr fed by ``ProgressReport``s."""
    if quiet:
        yield None
        return
    columns = [TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console.err, transient=False) as bar:
        task = bar.add_task("train", total=None, status="preparing")

        def on_epoch(r: ProgressReport) -> None:
            eps = f" eps {r.epsilon:.2f}" if r.epsilon is not None else ""
            bar.update(task, completed=r.done, total=r.total,
                       status=f"{r.phase} {r.done}/{r.total}{eps} {r.detail}")

        yield on_epoch


def _report(result: TrainResult, as_json: bool) -> None:
    if as_json:
        console.emit_json(result.to_dict())
        return
    if result.private:
        privacy = [["epsilon (spent)", f"{result.epsilon:.4g}"], ["delta", f"{result.delta:.1e}"],
                   ["accountant", result.accountant]]
        privacy += [[f"event: {e['purpose']}", _event_text(e)] for e in result.events]
    else:
        privacy = [["privacy", "NONE: non-private baseline, never releasable"]]
    console.table(f"Trained {result.model_dir} ({result.engine} engine)", ["field", "value"], privacy + [
        ["rows (exact, operator only)", result.rows], ["seconds", result.seconds]])


def _event_text(event: dict) -> str:
    if event["kind"] == "exponential":
        return f"exponential mechanism, epsilon {event['epsilon']:.4g}, x{event['count']}"
    rate = f", sample rate {event['sample_rate']:.4g}" if event["kind"] == "subsampled_gaussian" else ""
    return f"{event['kind']}, noise multiplier {event['noise_multiplier']:.4g}{rate}, x{event['count']}"


def _report_demo(summary: dict) -> None:
    console.out.print(f"[bold]H-GAN demo[/]: {summary['table']} ({summary['provenance']})")
    for line in summary["steps"]:
        console.out.print(f"  - {line}")
    console.table("Real (training rows) vs synthetic", ["column", "statistic", "real", "synthetic"],
                  [[r["column"], r["statistic"], f"{r['real']:.3f}", f"{r['synthetic']:.3f}"]
                   for r in summary["marginals"]])
    u = summary["utility"]
    console.out.print(f"Utility (TSTR, outcome {summary['outcome']}): AUROC {u['tstr_auroc']:.3f} "
                      f"from synthetic vs {u['trtr_auroc']:.3f} from real rows (ratio {u['ratio']:.2f}).")
    console.out.print(f"Privacy: epsilon {summary['epsilon']:.3f}, delta {summary['delta']:.0e} "
                      f"(RDP accountant, every event listed in {summary['model_dir']}/generator.json).")
    a = summary["audit"]
    worst = a["worst_attack"]
    bound = a["max_epsilon_lower_bound"]
    console.out.print(f"Audit: DP consistency {a['dp_consistency']}; strongest membership attack "
                      f"{worst['attack_id']} AUC {worst['auc']:.3f} (0.5 = guessing); largest empirical epsilon "
                      f"lower bound {'unbounded' if bound is None else f'{bound:.3f}'} (claimed "
                      f"{summary['epsilon']:.3f}). Report: {a['report']}/report.html")
