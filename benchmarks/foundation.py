"""Foundation benchmarks: DP-SGD speed, TSTR utility, CLI wall time, torch threads.

Usage::

    python benchmarks/foundation.py speed|utility|walltime|threads|all [--quick] [--out DIR]

Sections (each prints one markdown table and writes ``<out>/<section>.json``:
the machine, the command, the date, every raw measurement and the summary):

``speed``
    The GAN engine (``engine="gan"``) on both demo tables (all rows), epochs 3,
    seed 0, default options otherwise: seconds per epoch and per step of the
    training loop (``TrainResult.loop_seconds``) for DP-SGD with the ghost-norm
    backend (the default), the same model without DP, and DP-SGD with Opacus'
    per-sample hooks (``dp_backend="opacus"``). One untimed run per mode first
    (warm-up; it also caches sigma's calibration, ``cached_calibration``),
    then the modes interleaved over 3 repetitions (order rotated each time).
    Headline: per-step ratios (DP runs a slightly different number of steps:
    the noisy row count sets the sample rate).
``utility``
    Each table, seeds 0, 1, 2: a stratified 80/20 split; a generator trained on
    the 80% by each engine (GAN, marginal) at epsilon 1, 3.5 and 10, and by the
    GAN without DP (default options otherwise), as many rows sampled as were
    trained on, scored by ``tstr`` (TSTR AUROC / TRTR AUROC on the real
    holdout). The floor at each epsilon: independent per-column DP marginals
    (``marginal_floor``).
``walltime``
    ``hgan train flchain.csv --schema ... --epsilon 3.5 --out ... --json`` as a
    subprocess (the default engine, and ``--engine gan``), 3 repetitions each,
    interleaved: start-up, CSV load, validation, training and the model write,
    as an operator sees it.
``threads``
    GAN DP training on flchain (epochs 2) with 1 and 2 torch threads, idle and
    with a busy-loop process occupying one core; every setting in a fresh
    subprocess with ``OMP_NUM_THREADS`` set (one untimed run, then the timed
    one), interleaved over 3 repetitions.

The machine is shared and noisy, so every speed figure is a ratio of medians
measured within one run. torch uses 1 thread except in ``threads``.
``--quick`` (1 seed, 1 repetition, 1 epoch everywhere, epsilon 3.5 only, the
GAN engine only) is a smoke test of about a minute, not a measurement; its
results go to ``benchmarks/_work/results`` (git-ignored) unless ``--out`` says
otherwise. Results and their reading: ``benchmarks/RESULTS.md``.
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from _common import code_version, cpu_model, fmt, hgan_command, markdown, median, rotated
from hgan.appliance.accounting import PrivacyEvent, calibrate_noise_multiplier, epsilon
from hgan.appliance.data import load_table
from hgan.appliance.demo import demo_file
from hgan.appliance.train import TrainOptions, TrainResult, train
from hgan.audit.utility import stratified_split, tstr
from hgan.release.codec import Codec
from hgan.release.model import load_model
from hgan.release.sample import sample
from hgan.release.schema import Schema

SECTIONS = ("speed", "utility", "walltime", "threads")
WORKER = "_thread-worker"  # hidden section: one timed training in a fresh process (for `threads`)
TABLES = ("flchain", "rotterdam")
HOLDOUT = 0.2
FLOOR_DELTA = 1e-6
CLI_EPSILON = 3.5
HERE = Path(__file__).resolve().parent
GAN, MARGINAL = "gan", "marginal"  # TrainOptions.engine
SPEED_UNITS = {"per_step": "s/step", "per_epoch": "s/epoch"}
MODES = {  # speed: TrainOptions changes per mode
    "dp-ghost": {},
    "no-dp": {"dp": False},
    "dp-opacus": {"dp_backend": "opacus"},
}


@dataclass(frozen=True)
class Plan:
    """Sizes of a run (full or --quick)."""

    reps: int
    seeds: tuple[int, ...]
    speed_epochs: int
    thread_epochs: int
    utility_epochs: int
    epsilons: tuple[float, ...]
    engines: tuple[str, ...]  # utility and walltime; speed and threads time the GAN's DP-SGD
    cli_epochs: int | None  # None: the CLI default


FULL = Plan(reps=3, seeds=(0, 1, 2), speed_epochs=3, thread_epochs=2, utility_epochs=TrainOptions.epochs,
            epsilons=(1.0, 3.5, 10.0), engines=(GAN, MARGINAL), cli_epochs=None)
QUICK = Plan(reps=1, seeds=(0,), speed_epochs=1, thread_epochs=1, utility_epochs=1,
             epsilons=(3.5,), engines=(GAN,), cli_epochs=1)


# --- shared helpers ---------------------------------------------------------------

@lru_cache(maxsize=None)
def load(table: str) -> tuple[Schema, pd.DataFrame]:
    """A demo table, validated against its reviewed schema."""
    schema = Schema.load(demo_file(f"{table}.schema.toml"))
    return schema, load_table(demo_file(f"{table}.csv"), schema)


@contextmanager
def trained(frame: pd.DataFrame, schema: Schema, options: TrainOptions) -> Iterator[TrainResult]:
    """Train into a temporary model directory, which lives while the context is open."""
    with tempfile.TemporaryDirectory(prefix="hgan-bench-") as tmp:
        yield train(frame, schema, out=Path(tmp) / "model", options=options)




@contextmanager
def cached_calibration() -> Iterator[None]:
    """While open, sigma calibration answers repeated arguments from a cache.

    Calibration (a bisection over the accountant: 0.4-1 s of CPU, more for
    fewer steps) runs once per DP run, and the current engine code counts it in
    ``loop_seconds``; a cached answer takes no time, so a warmed-up run times
    the training steps only. The sigma is the same, so the run is the same.
    """
    import hgan.appliance.gan as gan_module  # the engine module that calibrates

    original = gan_module.calibrate_noise_multiplier
    cache: dict = {}

    def cached(**kwargs):
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items()))
        if key not in cache:
            cache[key] = original(**kwargs)
        return cache[key]

    gan_module.calibrate_noise_multiplier = cached
    try:
        yield
    finally:
        gan_module.calibrate_noise_multiplier = original


def epoch_timing(frame: pd.DataFrame, schema: Schema, options: TrainOptions) -> dict:
    """Wall seconds of the training loop (``loop_seconds``) per epoch and per step.

    Use inside ``cached_calibration``, after a run with the same options.
    """
    with trained(frame, schema, options) as result:
        return {"epochs": result.epochs, "steps": result.steps, "loop_seconds": result.loop_seconds,
                "per_epoch": result.loop_seconds / result.epochs, "per_step": result.loop_seconds / result.steps}






def machine() -> dict:
    return {"nproc": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)), "cpu": cpu_model(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "loadavg_start": os.getloadavg()}


def report(section: str, out: Path, headers: Sequence[str], rows: Sequence[Sequence[str]],
           raw: object, summary: object, meta: dict) -> None:
    """Print the section's markdown table and write its JSON."""
    print(f"\n## {section}\n\n{markdown(headers, rows)}\n", flush=True)
    meta = {**meta, "loadavg_end": os.getloadavg()}
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{section}.json"
    path.write_text(json.dumps({"section": section, **meta, "summary": summary, "raw": raw}, indent=1) + "\n")
    print(f"raw numbers: {path}", flush=True)


# --- speed ------------------------------------------------------------------------

@cached_calibration()
def speed(plan: Plan) -> tuple:
    raw, summary, rows = [], [], []
    for table in TABLES:
        schema, frame = load(table)
        base = TrainOptions(engine=GAN, epochs=plan.speed_epochs, seed=0)
        for mode in MODES:  # untimed: fills the calibration cache, first-call costs of torch and hooks
            epoch_timing(frame, schema, replace(base, **MODES[mode]))
        for rep in range(plan.reps):
            for mode in rotated(list(MODES), rep):
                raw.append({"table": table, "rows": len(frame), "rep": rep, "mode": mode,
                            **epoch_timing(frame, schema, replace(base, **MODES[mode]))})
        s = speed_summary(table, [r for r in raw if r["table"] == table])
        summary.append(s)
        rows += [[table, label, *(fmt(s[unit][m]) for m in MODES),
                  *(fmt(s[unit][k], 3) for k in ("dp/no-dp", "opacus/no-dp", "opacus/ghost"))]
                 for unit, label in SPEED_UNITS.items()]
    headers = ["table", "time", *MODES, "DP/non-DP", "opacus/non-DP", "opacus/ghost"]
    return headers, rows, raw, summary


def speed_summary(table: str, runs: list[dict]) -> dict:
    """Medians per mode and their ratios, per step and per epoch."""
    out: dict = {"table": table, "steps": {m: sorted({r["steps"] for r in runs if r["mode"] == m}) for m in MODES}}
    for unit in SPEED_UNITS:
        med = {m: median([r[unit] for r in runs if r["mode"] == m]) for m in MODES}
        out[unit] = {**med, "dp/no-dp": med["dp-ghost"] / med["no-dp"],
                     "opacus/no-dp": med["dp-opacus"] / med["no-dp"],
                     "opacus/ghost": med["dp-opacus"] / med["dp-ghost"]}
    return out


# --- utility ----------------------------------------------------------------------

def floor_noise(eps: float, k: int) -> float:
    """Gaussian std for k histograms released at once (L2 sensitivity sqrt(k)) at (eps, FLOOR_DELTA)."""
    multiplier = calibrate_noise_multiplier(target_epsilon=eps, delta=FLOOR_DELTA, sample_rate=1.0, steps=1)
    spent = epsilon([PrivacyEvent("gaussian", "per-column marginals", multiplier, 1.0, 1)], FLOOR_DELTA)
    assert spent <= eps, (spent, eps)
    return multiplier * np.sqrt(k)


def noisy_shares(histograms: list[np.ndarray], std: float, rng: np.random.Generator) -> list[np.ndarray]:
    """The DP release: every histogram + N(0, std^2) per bin, clamped at 0, normalised."""
    out = []
    for h in histograms:
        noisy = np.maximum(h + std * rng.standard_normal(len(h)), 0.0)
        out.append(noisy / noisy.sum() if noisy.sum() > 0 else np.full(len(h), 1.0 / len(h)))
    return out


def marginal_floor(train_rows: pd.DataFrame, schema: Schema, *, eps: float, n: int, seed: int) -> pd.DataFrame:
    """n rows whose columns (and target) are drawn independently from DP marginals at ``eps``."""
    codec = Codec(schema)
    codes, _ = codec.encode_codes(train_rows)
    columns = [*codes.T, codec.encode_target(train_rows)]
    sizes = [*codec.head_sizes, codec.n_classes]
    histograms = [np.bincount(c, minlength=size).astype(np.float64) for c, size in zip(columns, sizes)]
    rng = np.random.default_rng(seed)
    shares = noisy_shares(histograms, floor_noise(eps, len(histograms)), rng)
    draws = [rng.choice(len(p), size=n, p=p) for p in shares]
    offsets = rng.uniform(-1.0, 1.0, size=(n, codec.n_offsets)).astype(np.float32)
    return codec.decode(np.column_stack(draws[:-1]), offsets, draws[-1])


def model_synthetic(train_rows: pd.DataFrame, schema: Schema, options: TrainOptions, *,
                  n: int, seed: int) -> tuple[pd.DataFrame, dict]:
    with trained(train_rows, schema, options) as result:
        synthetic = sample(load_model(result.model_dir), n, seed=seed)
    return synthetic, {"engine": result.engine, "epsilon_spent": result.epsilon,
                       "noise_multiplier": result.noise_multiplier, "steps": result.steps,
                       "seconds": result.seconds}


def utility_settings(plan: Plan, seed: int) -> list[tuple[str, float | None, TrainOptions | None]]:
    """(label, epsilon, options): each engine at each epsilon, the GAN without DP, then the floors."""
    base = TrainOptions(epochs=plan.utility_epochs, seed=seed)
    return ([(f"{engine} eps {e:g}", e, replace(base, engine=engine, epsilon=e))
             for engine in plan.engines for e in plan.epsilons]
            + [(f"{GAN} no DP", None, replace(base, engine=GAN, dp=False))]
            + [(f"floor eps {e:g}", e, None) for e in plan.epsilons])


def utility(plan: Plan) -> tuple:
    raw = []
    for table in TABLES:
        schema, frame = load(table)
        for seed in plan.seeds:
            train_rows, holdout = stratified_split(frame, schema, holdout=HOLDOUT, seed=seed)
            n = len(train_rows)
            for label, eps, options in utility_settings(plan, seed):
                if options is None:
                    synthetic, extra = marginal_floor(train_rows, schema, eps=eps, n=n, seed=seed), {}
                else:
                    synthetic, extra = model_synthetic(train_rows, schema, options, n=n, seed=seed)
                scores = tstr(synthetic, train_rows, holdout, schema, seed=seed)
                raw.append({"table": table, "seed": seed, "setting": label, "epsilon": eps,
                            "train_rows": n, "holdout_rows": len(holdout), **scores, **extra})
                print(f"  {table} seed {seed} {label}: ratio {scores['ratio']:.3f}", flush=True)
    summary = utility_summary(raw)
    headers = ["table", "setting", "ratio mean", "ratio min-max", "signal kept", "TSTR AUROC", "TRTR AUROC"]
    rows = [[s["table"], s["setting"], fmt(s["ratio_mean"]), f"{fmt(s['ratio_min'])}-{fmt(s['ratio_max'])}",
             fmt(s["signal_kept_mean"], 2), fmt(s["tstr_auroc_mean"]), fmt(s["trtr_auroc_mean"])]
            for s in summary]
    return headers, rows, raw, summary


def utility_summary(raw: list[dict]) -> list[dict]:
    out = []
    for (table, setting), group in pd.DataFrame(raw).groupby(["table", "setting"], sort=False):
        out.append({"table": table, "setting": setting, "seeds": len(group),
                    "train_rows": int(group["train_rows"].iloc[0]), "holdout_rows": int(group["holdout_rows"].iloc[0]),
                    "ratio_mean": group["ratio"].mean(), "ratio_min": group["ratio"].min(),
                    "ratio_max": group["ratio"].max(), "signal_kept_mean": group["signal_kept"].mean(),
                    "tstr_auroc_mean": group["tstr_auroc"].mean(), "trtr_auroc_mean": group["trtr_auroc"].mean()})
    return out


# --- walltime ---------------------------------------------------------------------


def cli_train(engine: str, epochs: int | None, out: str) -> list[str]:
    """``hgan train`` on flchain at CLI_EPSILON; ``--engine`` only when not the default."""
    return [*hgan_command(), "train", str(demo_file("flchain.csv")), "--schema", str(demo_file("flchain.schema.toml")),
            "--epsilon", str(CLI_EPSILON), "--out", out, "--json",
            *([] if engine == TrainOptions.engine else ["--engine", engine]),
            *(["--epochs", str(epochs)] if epochs else [])]


def walltime(plan: Plan) -> tuple:
    env = {k: v for k, v in os.environ.items() if k != "HGAN_THREADS"}  # the CLI's default threads
    raw = []
    for rep in range(plan.reps):
        for engine in rotated(plan.engines, rep):
            with tempfile.TemporaryDirectory(prefix="hgan-bench-") as tmp:
                command = cli_train(engine, plan.cli_epochs, f"{tmp}/m")
                started = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                wall = time.perf_counter() - started
            result = json.loads(done.stdout)
            raw.append({"rep": rep, "engine": result["engine"], "wall_seconds": wall,
                        "train_seconds": result["seconds"], "epsilon": result["epsilon"], "steps": result["steps"],
                        "rows": result["rows"], "command": " ".join(command)})
    summary = [{"engine": engine, "default": engine == TrainOptions.engine, "rows": runs[0]["rows"],
                "wall_seconds_median": median([r["wall_seconds"] for r in runs]),
                "train_seconds_median": median([r["train_seconds"] for r in runs]),
                "epsilon_max": max(r["epsilon"] for r in runs)}
               for engine in plan.engines for runs in [[r for r in raw if r["engine"] == engine]]]
    rows = [["flchain", s["rows"], s["engine"] + (" (default)" if s["default"] else ""), fmt(s["epsilon_max"], 4),
             fmt(s["wall_seconds_median"]), fmt(s["train_seconds_median"]), "< 60"] for s in summary]
    headers = ["table", "rows", "engine", "epsilon spent (max)", "wall s (median)", "train() s (median)", "goal s"]
    return headers, rows, raw, summary


# --- threads ----------------------------------------------------------------------

def thread_worker(threads: int, epochs: int) -> None:
    """Runs in a fresh process: DP training on flchain (``epoch_timing``); prints the timing as JSON."""
    torch.set_num_threads(threads)
    schema, frame = load("flchain")
    options = TrainOptions(engine=GAN, epochs=epochs, seed=0)
    with cached_calibration():
        epoch_timing(frame, schema, options)  # untimed: fills the cache, first-call costs
        timing = epoch_timing(frame, schema, options)
    print(json.dumps({"torch_threads": torch.get_num_threads(), **timing}))


def thread_run(threads: int, epochs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, WORKER, "--threads", str(threads), "--epochs", str(epochs)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """While open, a Python busy loop occupies one core (if ``busy``)."""
    if not busy:
        yield
        return
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield
    finally:
        loop.kill()
        loop.wait()


def threads(plan: Plan) -> tuple:
    raw = []
    for rep in range(plan.reps):
        for load_kind in rotated(["idle", "busy core"], rep):
            with busy_core(load_kind == "busy core"):
                for n in rotated([1, 2], rep):
                    raw.append({"rep": rep, "load": load_kind, "threads": n, **thread_run(n, plan.thread_epochs)})
    times = {(k, n): [r["per_epoch"] for r in raw if r["load"] == k and r["threads"] == n]
             for k in ("idle", "busy core") for n in (1, 2)}
    med = {key: median(v) for key, v in times.items()}
    summary = [{"load": k, "per_epoch_1": med[k, 1], "per_epoch_2": med[k, 2], "2/1": med[k, 2] / med[k, 1],
                "worst_1": max(times[k, 1]), "worst_2": max(times[k, 2]),
                "vs idle 1 thread": {n: med[k, n] / med["idle", 1] for n in (1, 2)}} for k in ("idle", "busy core")]
    rows = [[s["load"], fmt(s["per_epoch_1"]), fmt(s["per_epoch_2"]), fmt(s["2/1"]),
             fmt(s["vs idle 1 thread"][1]), fmt(s["vs idle 1 thread"][2]),
             f"{fmt(s['worst_1'])} / {fmt(s['worst_2'])}"] for s in summary]
    headers = ["load", "1 thread s/epoch", "2 threads s/epoch", "2 threads / 1 thread",
               "1 thread / idle 1 thread", "2 threads / idle 1 thread", "worst s/epoch (1 / 2 threads)"]
    return headers, rows, raw, summary


# --- command line -----------------------------------------------------------------

RUNNERS = {"speed": speed, "utility": utility, "walltime": walltime, "threads": threads}


def run_section(section: str, plan: Plan, out: Path, argv: list[str]) -> None:
    meta = {"command": " ".join(["python", "benchmarks/foundation.py", *argv]),
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "quick": plan is QUICK, "plan": asdict(plan), "code": code_version(), "machine": machine()}
    started = time.perf_counter()
    headers, rows, raw, summary = RUNNERS[section](plan)
    meta["section_seconds"] = round(time.perf_counter() - started, 1)
    report(section, out, headers, rows, raw, summary, meta)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=[*SECTIONS, "all", WORKER],
                        metavar="{" + ",".join([*SECTIONS, "all"]) + "}")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 repetition, 1 epoch: a smoke test")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default benchmarks/results; benchmarks/_work/results with --quick)")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)  # worker only
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)  # worker only
    args = parser.parse_args(argv)
    if args.section == WORKER:
        thread_worker(args.threads, args.epochs)
        return
    torch.set_num_threads(1)
    plan = QUICK if args.quick else FULL
    out = args.out or HERE / ("_work/results" if args.quick else "results")
    for section in SECTIONS if args.section == "all" else [args.section]:
        run_section(section, plan, out, argv)


if __name__ == "__main__":
    main()
