"""Audit wall time: a full ``hgan audit`` of a generator trained on flchain, on 2 cores.

Usage::

    python benchmarks/audit_walltime.py [--reps N] [--out PATH] [--quick]

Method
    flchain (the demo table, 7,874 rows, its reviewed schema) is split 80/20 by
    ``stratified_split(frame, schema, holdout=0.2, seed=0)`` into a temporary
    folder as ``train.csv`` (6,299 rows) and ``holdout.csv`` (1,575 rows). The
    files hold the demo CSV's own text rows (dropped columns included, so they
    match the schema) in the split's order; both are loaded back with
    ``load_table`` and must equal the split frames before anything is timed.
    One model per engine (marginal, the default, and gan) is trained on
    ``train.csv`` with ``hgan train ... --epsilon 3.5 --seed 0 --json``; the
    training is not timed here (``foundation.py walltime`` times it). Then each
    model is audited ``--reps`` times (default 3), the engines interleaved
    (order rotated each repetition), every audit a fresh subprocess run from
    the temporary folder::

        hgan audit model-ENGINE --train train.csv --holdout holdout.csv \\
            --schema .../flchain.schema.toml --out audit-ENGINE-REP --seed 0 --json

What is timed
    ``wall``: the whole command as an operator sees it, from the subprocess'
    start to its exit: interpreter start-up and imports, loading and validating
    both CSVs and the model, every step of the audit and writing report.json
    and report.html. ``total`` and the per-step figures (sample, membership,
    whitebox, singling_out.univariate, singling_out.multivariate, linkability,
    inference, utility and any other step the audit reports) are the audit's
    own ``timings`` from report.json; ``wall - total`` is the overhead outside
    ``audit.run.audit``. The row counts (members / non-members / reference /
    synthetic) come from report.json's ``data``. Summary: medians over the
    repetitions, the slowest step by median, and the goal (the issue's: under
    60 s wall), met when every repetition's wall time is under it.

torch and BLAS run on one thread (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
and ``MKL_NUM_THREADS`` = 1, ``HGAN_THREADS`` unset: the CLI's default of one
torch thread). The machine is shared and noisy: the load average is recorded at
the start, at the end and before every audit. The JSON (default
``benchmarks/results/audit.json``) holds the machine, the command, the date,
the code version (``git describe --always --dirty`` and a digest of the package
sources at the start and at the end of the run), the setup, every repetition
and the summary. ``--quick`` (1 repetition, the marginal engine only) is a
smoke test; it writes to the git-ignored ``benchmarks/_work/results/audit.json``
unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from _common import code_version, cpu_model, fmt, hgan_command, markdown, median, rotated
from hgan.appliance.data import load_table, read_csv_text
from hgan.appliance.demo import demo_file
from hgan.audit.utility import stratified_split
from hgan.release.sample import write_table
from hgan.release.schema import Schema

TABLE = "flchain"
HOLDOUT = 0.2
SPLIT_SEED = 0
EPSILON = 3.5
TRAIN_SEED = 0
AUDIT_SEED = 0
ENGINES = ("marginal", "gan")  # the CLI's default first
GOAL_SECONDS = 60.0
ROW_FIELDS = ("members", "non_members", "reference", "synthetic")
HERE = Path(__file__).resolve().parent
SUBPROCESS_TIMEOUT = 1800  # seconds; a hung command fails the run instead of blocking it


# --- helpers (the conventions of foundation.py) ---------------------------------------







def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """The machine, read without importing torch (the timed work runs in subprocesses)."""
    return {"nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu": cpu_model(),
            "python": platform.python_version(), "torch": version("torch"), "numpy": version("numpy"),
            "pandas": version("pandas"), "sklearn": version("scikit-learn"), "loadavg_start": os.getloadavg()}



def one_thread_env() -> dict[str, str]:
    """This process' environment with torch and BLAS on one thread, HGAN_THREADS unset."""
    env = {k: v for k, v in os.environ.items() if k != "HGAN_THREADS"}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_json(command: list[str], cwd: Path, env: dict[str, str], ok: Sequence[int] = (0,)) -> tuple[dict, float, int]:
    """Run ``command`` (its stdout: one JSON object); (that object, wall seconds, exit status)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    wall = time.perf_counter() - started
    if done.returncode not in ok:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{' '.join(command)}: exit status {done.returncode}")
    return json.loads(done.stdout), wall, done.returncode


# --- setup ------------------------------------------------------------------------------

def write_split(work: Path) -> tuple[Path, dict]:
    """flchain split 80/20 into ``work``: train.csv, holdout.csv; (schema path, setup record)."""
    schema_path, data_path = demo_file(f"{TABLE}.schema.toml"), demo_file(f"{TABLE}.csv")
    schema = Schema.load(schema_path)
    frame = load_table(data_path, schema)
    text = read_csv_text(data_path)  # the same rows as strings, every column of the file
    expected = stratified_split(frame, schema, holdout=HOLDOUT, seed=SPLIT_SEED)
    # the split touches only the target and the row order, so a row-number column rides along
    numbered = stratified_split(frame.assign(_row=np.arange(len(frame))), schema, holdout=HOLDOUT, seed=SPLIT_SEED)
    record: dict = {"table": TABLE, "rows": len(frame), "holdout": HOLDOUT, "split_seed": SPLIT_SEED,
                    "schema": str(schema_path), "data": str(data_path)}
    for name, typed, rows in zip(("train", "holdout"), expected, numbered):
        path = write_table(text.iloc[rows["_row"].to_numpy()], work / f"{name}.csv")
        pd.testing.assert_frame_equal(load_table(path, schema), typed)  # hgan loads it back as the split
        record[f"{name}_rows"] = len(typed)
    return schema_path, record


def train_command(engine: str, schema_path: Path) -> list[str]:
    return [*hgan_command(), "train", "train.csv", "--schema", str(schema_path), "--epsilon", str(EPSILON),
            "--out", f"model-{engine}", "--engine", engine, "--seed", str(TRAIN_SEED), "--json"]


def audit_command(engine: str, rep: int, schema_path: Path) -> list[str]:
    return [*hgan_command(), "audit", f"model-{engine}", "--train", "train.csv", "--holdout", "holdout.csv",
            "--schema", str(schema_path), "--out", f"audit-{engine}-{rep}", "--seed", str(AUDIT_SEED), "--json"]


# --- the benchmark ----------------------------------------------------------------------

def measure(engines: Sequence[str], reps: int) -> tuple[dict, list[dict]]:
    env = one_thread_env()
    with tempfile.TemporaryDirectory(prefix="hgan-bench-audit-") as tmp:
        work = Path(tmp)
        schema_path, setup = write_split(work)
        setup["train"] = []
        for engine in engines:
            result, wall, _ = run_json(train_command(engine, schema_path), work, env)
            setup["train"].append({"engine": engine, "command": " ".join(train_command(engine, schema_path)),
                                   "wall_seconds": wall, "train_seconds": result["seconds"],
                                   "epsilon": result["epsilon"], "delta": result["delta"], "rows": result["rows"]})
            print(f"  trained {engine}: epsilon {result['epsilon']:.4g}, {wall:.1f} s", flush=True)
        raw = []
        for rep in range(reps):
            for engine in rotated(list(engines), rep):
                command = audit_command(engine, rep, schema_path)
                loadavg = os.getloadavg()
                summary, wall, status = run_json(command, work, env, ok=(0, 1))  # 1: DP check "broken", still a full audit
                report = json.loads((work / f"audit-{engine}-{rep}" / "report.json").read_text())
                timings = report["timings"]
                raw.append({"rep": rep, "engine": engine, "command": " ".join(command), "exit_status": status,
                            "loadavg_before": loadavg, "wall_seconds": wall, "total_seconds": timings["total"],
                            "overhead_seconds": wall - timings["total"], "summary_seconds": summary["seconds"],
                            "timings": timings, "data": {k: report["data"][k] for k in (*ROW_FIELDS, "holdout_unused")},
                            "dp_consistency": report["dp_consistency"]["status"]})
                slowest = max((s for s in timings if s != "total"), key=timings.get)
                print(f"  rep {rep} {engine}: wall {wall:.1f} s, audit {timings['total']:.1f} s, "
                      f"slowest {slowest} {timings[slowest]:.1f} s", flush=True)
    setup["env"] = {k: env.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                            "HGAN_THREADS")}
    setup["audit_command"] = " ".join(audit_command("ENGINE", "REP", schema_path))  # run in the split's folder
    return setup, raw


def step_names(runs: Sequence[dict]) -> list[str]:
    """The steps of report.json's ``timings`` (all but ``total``), in the audit's order, as the runs name them."""
    return list(dict.fromkeys(k for r in runs for k in r["timings"] if k != "total"))


def summarise(engines: Sequence[str], raw: list[dict]) -> list[dict]:
    out = []
    for engine in engines:
        runs = [r for r in raw if r["engine"] == engine]
        steps = {s: median([r["timings"][s] for r in runs if s in r["timings"]]) for s in step_names(runs)}
        slowest = max(steps, key=steps.get)
        walls = [r["wall_seconds"] for r in runs]
        out.append({"engine": engine, "reps": len(runs), "rows": runs[0]["data"],
                    "wall_seconds_median": median(walls), "wall_seconds_max": max(walls),
                    "total_seconds_median": median([r["total_seconds"] for r in runs]),
                    "overhead_seconds_median": median([r["overhead_seconds"] for r in runs]),
                    "steps_median": steps, "slowest_step": slowest, "slowest_step_seconds": steps[slowest],
                    "goal_seconds": GOAL_SECONDS, "goal_met": max(walls) < GOAL_SECONDS,
                    "dp_consistency": sorted({r["dp_consistency"] for r in runs})})
    return out


def tables(summary: list[dict]) -> str:
    headers = ["table", "engine", "rows (members / non-members / reference / synthetic)", "wall s (median)",
               "wall s (max)", "audit total s (median)", "slowest step (median s)", "goal"]
    rows = [[TABLE, s["engine"], " / ".join(str(s["rows"][k]) for k in ROW_FIELDS), fmt(s["wall_seconds_median"]),
             fmt(s["wall_seconds_max"]), fmt(s["total_seconds_median"]),
             f"{s['slowest_step']} ({fmt(s['slowest_step_seconds'])})",
             f"< {GOAL_SECONDS:g} s: {'met' if s['goal_met'] else 'NOT met'}"] for s in summary]
    steps = list(dict.fromkeys(k for s in summary for k in s["steps_median"]))
    step_rows = [[s["engine"], *(fmt(s["steps_median"].get(k)) for k in steps), fmt(s["total_seconds_median"]),
                  fmt(s["overhead_seconds_median"])] for s in summary]
    return (markdown(headers, rows) + "\n\nPer step, median s:\n\n"
            + markdown(["engine", *steps, "total", "outside the audit (wall - total)"], step_rows))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="audits per engine (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default benchmarks/results/audit.json; "
                             "benchmarks/_work/results/audit.json with --quick)")
    parser.add_argument("--quick", action="store_true", help="1 repetition, the marginal engine only: a smoke test")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    if reps < 1:
        parser.error("--reps must be at least 1")
    engines = ENGINES[:1] if args.quick else ENGINES
    out = args.out or HERE / ("_work/results/audit.json" if args.quick else "results/audit.json")
    meta = {"section": "audit", "command": " ".join(["python", "benchmarks/audit_walltime.py", *argv]),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"), "quick": args.quick,
            "plan": {"reps": reps, "engines": list(engines), "epsilon": EPSILON, "train_seed": TRAIN_SEED,
                     "audit_seed": AUDIT_SEED, "goal_seconds": GOAL_SECONDS},
            "code": code_version(), "machine": machine()}
    started = time.perf_counter()
    setup, raw = measure(engines, reps)
    summary = summarise(engines, raw)
    meta["section_seconds"] = round(time.perf_counter() - started, 1)
    meta["code_end"] = code_version()  # another digest than "code": the sources changed during the run
    meta["loadavg_end"] = os.getloadavg()
    print(f"\n## audit wall time ({TABLE}, {setup['train_rows']} training rows, {setup['holdout_rows']} held out)\n\n"
          f"{tables(summary)}\n", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "setup": setup, "summary": summary, "raw": raw}, indent=1) + "\n")
    print(f"command: {setup['audit_command']}\nraw numbers: {out}", flush=True)
    if meta["code_end"] != meta["code"]:
        print("warning: the package sources changed during the run", file=sys.stderr)


if __name__ == "__main__":
    main()
