"""Engines benchmark (issue 7): the marginal engine against AIM, MST, a DP naive Bayes and the GAN.

Usage::

    python benchmarks/engines.py [--tables T ...] [--eps E ...] [--seeds S ...] [--methods M ...]
                                 [--quick] [--peer-timeout S] [--stop-after MIN] [--retry]
                                 [--set NAME=VALUE ...] [--rows N] [--out DIR]
    python benchmarks/engines.py report
    python benchmarks/engines.py merge DIR [DIR ...]

Each cell (table, epsilon, seed) is a stratified 80/20 split
(``stratified_split(frame, schema, holdout=0.2, seed=seed)``), delta 1e-6. Each method
fits on the 80% and produces as many synthetic rows as there were training rows; the
rows are scored against the real ones by ``audit/utility.py``:

- outcome TSTR: ``tstr`` (HistGradientBoosting AUROC on the holdout, trained on the
  synthetic rows / trained on the real rows), its ratio and the signal kept,
  (TSTR - 0.5) / (TRTR - 0.5);
- other-column TSTR: ``other_column_tstr`` (each categorical column whose rarest class
  holds >= 5% of the training rows in turn as the outcome), mean ratio;
- ``tvd`` of all one-way and two-way marginals (16 bins over the public bounds);
- ``detection_auc``: real holdout rows against as many synthetic rows, 5-fold CV;
- fit time: wall and CPU seconds of the fit alone (not the sampling, not the scoring;
  for the peers, not the start of their interpreter either).

Two more samples of the same fit are scored apart (the record's ``iid`` and ``large``),
as the sampler matters to these figures:

- ``iid`` (the peers): as many rows drawn independently from the same fitted model
  (mbi's ``method="sample"``). mbi's default sampler rounds each conditional's counts, a
  stratified draw whose marginals sit closer to the model's than independent rows can;
  every other method here draws rows independently;
- ``large``: ``LARGE_FACTOR`` times as many rows, by each method's own sampler (no
  detection figure: the classes would be unbalanced). A released generator can be
  sampled without limit, so this shows the model with less of the sampling noise.

Methods:

``ours``   ``train(..., TrainOptions(engine="marginal", epsilon=e, delta=1e-6, seed=seed))``,
           then ``sample(load_model(...), n, seed=seed)``.
``gan``    the same with ``engine="gan"`` (default options otherwise).
``nb``     DP naive Bayes (``naive_bayes``): Laplace noise on the target histogram and on
           each (column, target) histogram of the codec's codes (fine columns as for the
           peers), epsilon split evenly
           over the d + 1 histograms (pure DP; no delta).
``binned`` a reference, not a method: the training rows re-drawn uniformly inside their
           bins (``binned_real``), what a perfect model of the bins alone would score.
``resampled`` a reference: as many rows drawn from the training rows with replacement
           (``resampled_real``), what a perfect model sampled row by row would score: the
           noise floor of the TVD figures for independent draws.
``mst``, ``aim``, ``aim_outcome``
           smartnoise-synth 1.0.8's MSTSynthesizer / AIMSynthesizer (``aim``: its default
           workload, all pairs; ``aim_outcome``: every (column, target) pair, every pair
           and every (column, column, target) triple, the marginals the marginal engine
           measures or selects from), run by ``benchmarks/peers_runner.py`` in a venv of
           their own (``benchmarks/_work/peers``, created here if missing; never a project
           dependency), with mbi's sampler fixed (``mbi_fix.apply()``, mbi 2.0.0's PR #145,
           post-processing). They get the product codec's codes (every feature and the
           target, the domain from the schema alone, so no preprocessor budget; the
           columns named by ``--peer-fine-columns`` at the fine bins, as the marginal
           engine chose them for the same cells, see its records) and their
           codes come back through ``Codec.decode`` with uniform offsets, exactly as the
           product's rows do. A peer that runs past ``--peer-timeout`` is recorded as a
           timeout.

Results: one record per (table, epsilon, seed, method) appended to
``benchmarks/results/engines.json`` as soon as it is done, with the invocation (command,
date, machine); a cell already there is skipped (``--retry`` re-runs errors and
timeouts). ``report`` writes ``benchmarks/ENGINES.md``. ``--set NAME=VALUE`` runs a variant of the
marginal engine (a constant of ``appliance/marginal.py`` overridden; the command line in
the invocation records it); keep variants in their own ``--out`` folder. ``--rows N`` trains on N of the
training rows (sampled with the seed, the holdout unchanged): a small-table check, also
only into its own ``--out`` folder. ``merge`` folds the results of
runs made with ``--out DIR`` (e.g. two methods run side by side) into the results file:
their invocations are appended, and each of their records replaces the one for the same
cell. ``--quick`` (rotterdam,
epsilon 3.5, seed 0, nb, mst and ours) writes to the git-ignored
``benchmarks/_work/results``. One fit at a time, torch and BLAS on one thread: the
machine has 2 shared cores.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from _common import cpu_model, git_describe, markdown
from hgan.appliance.data import load_table
from hgan.appliance.demo import demo_file
from hgan.appliance.train import TrainOptions, train
from hgan.audit.utility import detection_auc, other_column_tstr, stratified_split, tstr, tvd
from hgan.release.codec import Codec
from hgan.release.model import load_model
from hgan.release.sample import sample
from hgan.release.schema import Schema

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLES = ("rotterdam", "flchain")
EPSILONS = (1.0, 3.5, 10.0)
SEEDS = (0, 1, 2)
METHODS = ("nb", "mst", "aim", "aim_outcome", "ours", "gan", "binned", "resampled")
REFERENCES = ("binned", "resampled")
PEERS = ("mst", "aim", "aim_outcome")
DELTA = 1e-6
HOLDOUT = 0.2
THREADS = 1
LARGE_FACTOR = 8  # the "large" sample: this many times the training rows
PEER_TIMEOUT = 1200  # seconds per peer fit + sample; AIM takes minutes
PEERS_VENV = HERE / "_work" / "peers"
MBI_FIX_DIR = HERE / "_work" / "mbi_fix"
MBI_FIX_SOURCES = (Path(os.environ.get("HGAN_MBI_FIX", "/nonexistent")), REPO.parent / "shared" / "peers" / "mbi_fix.py")
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
                  "JAX_PLATFORMS": "cpu"}
QUICK = {"tables": ["rotterdam"], "eps": [3.5], "seeds": [0], "methods": ["nb", "mst", "ours"]}
LABELS = {"ours": "ours (marginal)", "gan": "GAN (DP-SGD)", "nb": "DP naive Bayes", "mst": "MST",
          "aim": "AIM (default workload)", "aim_outcome": "AIM (outcome workload)",
          "binned": "reference: real rows, uniform in their bins",
          "resampled": "reference: real rows drawn with replacement"}


# --- data ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def load(table: str) -> tuple[Schema, pd.DataFrame]:
    """A demo table, validated against its reviewed schema."""
    schema = Schema.load(demo_file(f"{table}.schema.toml"))
    return schema, load_table(demo_file(f"{table}.csv"), schema)


def uniform_offsets(codec: Codec, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(n, codec.n_offsets)).astype(np.float32)


# --- methods: each returns (synthetic rows, fit wall s, fit CPU s, details) -----------

Fit = tuple[pd.DataFrame, float, float, dict]
SAMPLES = "samples"  # in a Fit's details: extra samples of the same fit, scored apart ({"iid": rows, "large": rows})


def product_engine(engine: str) -> Callable[..., Fit]:
    def run(train_rows: pd.DataFrame, schema: Schema, *, eps: float, seed: int, n: int) -> Fit:
        options = TrainOptions(engine=engine, epsilon=eps, delta=DELTA, seed=seed)
        with tempfile.TemporaryDirectory(prefix="hgan-engines-") as tmp:
            started, cpu = time.perf_counter(), time.process_time()
            result = train(train_rows, schema, out=Path(tmp) / "model", options=options)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            model = load_model(Path(tmp) / "model")
            synthetic = sample(model, n, seed=seed)
            large = sample(model, LARGE_FACTOR * n, seed=seed + 1)
        return synthetic, wall, cpu, {"epsilon_spent": result.epsilon, "delta": result.delta,
                                      "train_seconds": result.seconds, "steps": result.steps,
                                      "fine_columns": list(model.codec.fine_columns), SAMPLES: {"large": large}}
    return run


def naive_bayes(train_rows: pd.DataFrame, schema: Schema, *, eps: float, seed: int, n: int,
                fine_columns: tuple[str, ...] = ()) -> Fit:
    """DP naive Bayes: d + 1 Laplace histograms (each L1 sensitivity 1) at eps / (d + 1) each."""
    started, cpu = time.perf_counter(), time.process_time()
    codec = Codec(schema, fine_columns=fine_columns)
    codes, _ = codec.encode_codes(train_rows)
    y = codec.encode_target(train_rows)
    k, d = codec.n_classes, codes.shape[1]
    rng = np.random.default_rng(seed)
    scale = (d + 1) / eps

    def noisy(counts: np.ndarray) -> np.ndarray:  # Laplace, clamped at 0 (post-processing)
        return np.maximum(counts + rng.laplace(0.0, scale, counts.shape), 0.0)

    prior = noisy(np.bincount(y, minlength=k).astype(np.float64))
    prior = prior / prior.sum() if prior.sum() > 0 else np.full(k, 1.0 / k)
    conditionals = []
    for j, size in enumerate(codec.head_sizes):
        table = noisy(np.bincount(codes[:, j] * k + y, minlength=size * k).reshape(size, k).astype(np.float64))
        totals = table.sum(0, keepdims=True)
        conditionals.append(np.where(totals > 0, table / np.where(totals > 0, totals, 1.0), 1.0 / size))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu

    def draw(rows: int) -> pd.DataFrame:
        classes = rng.choice(k, size=rows, p=prior)
        drawn = np.empty((rows, d), dtype=np.int64)
        for j, cond in enumerate(conditionals):
            cdf = np.cumsum(cond[:, classes], axis=0)            # (size, rows)
            drawn[:, j] = np.minimum((rng.random(rows) * cdf[-1] > cdf).sum(0), cond.shape[0] - 1)
        return codec.decode(drawn, uniform_offsets(codec, rows, rng), classes)

    synthetic = draw(n)
    return synthetic, wall, cpu, {"epsilon_spent": eps, "delta": 0.0, "laplace_scale": scale,
                                  "fine_columns": list(fine_columns), SAMPLES: {"large": draw(LARGE_FACTOR * n)}}


def binned_real(train_rows: pd.DataFrame, schema: Schema, *, eps: float, seed: int, n: int,
                fine_columns: tuple[str, ...] = ()) -> Fit:
    """Not a method: the training rows themselves, each number re-drawn uniformly inside its
    codec bin: what a perfect model of the bins alone would give (no privacy; ``eps`` is ignored)."""
    codec = Codec(schema, fine_columns=fine_columns)
    codes, _ = codec.encode_codes(train_rows)
    rng = np.random.default_rng(seed)
    rows = codec.decode(codes, uniform_offsets(codec, len(codes), rng), codec.encode_target(train_rows))
    return rows, 0.0, 0.0, {"reference": True, "fine_columns": list(fine_columns)}


def resampled_real(train_rows: pd.DataFrame, schema: Schema, *, eps: float, seed: int, n: int) -> Fit:
    """Not a method: ``n`` rows drawn from the training rows with replacement, the noise floor of
    a perfect generator sampled row by row (no privacy; ``eps`` is ignored)."""
    rng = np.random.default_rng(seed)
    rows, large = (train_rows.iloc[rng.integers(0, len(train_rows), m)].reset_index(drop=True)
                   for m in (n, LARGE_FACTOR * n))
    return rows, 0.0, 0.0, {"reference": True, SAMPLES: {"large": large}}


class PeerTimeout(Exception):
    pass


def peer(method: str) -> Callable[..., Fit]:
    def run(train_rows: pd.DataFrame, schema: Schema, *, eps: float, seed: int, n: int,
            timeout: float = PEER_TIMEOUT, fine_columns: tuple[str, ...] = ()) -> Fit:
        python = ensure_peers_venv()
        fix_dir = ensure_mbi_fix()
        codec = Codec(schema, fine_columns=fine_columns)
        codes, _ = codec.encode_codes(train_rows)
        y = codec.encode_target(train_rows)
        with tempfile.TemporaryDirectory(prefix="hgan-peers-") as tmp:
            tmp = Path(tmp)
            np.savez(tmp / "in.npz", codes=np.column_stack([codes, y]),
                     cards=np.array([*codec.head_sizes, codec.n_classes]))
            command = [str(python), str(HERE / "peers_runner.py"), method, "--input", str(tmp / "in.npz"),
                       "--output", str(tmp / "out.npz"), "--meta", str(tmp / "meta.json"),
                       "--epsilon", str(eps), "--delta", str(DELTA), "--seed", str(seed), "--rows", str(n),
                       "--mbi-fix", str(fix_dir), "--iid-output", str(tmp / "iid.npz"),
                       "--large-output", str(tmp / "large.npz"), "--large-rows", str(LARGE_FACTOR * n)]
            try:
                done = subprocess.run(command, env={**os.environ, **ONE_THREAD_ENV}, capture_output=True,
                                      text=True, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                raise PeerTimeout(f"{method} ran past {timeout:.0f} s") from exc
            if done.returncode != 0:
                raise RuntimeError(f"{method} failed (exit {done.returncode}): {done.stderr[-1500:]}")
            meta = json.loads((tmp / "meta.json").read_text())
            out, iid, large = (np.load(tmp / f"{name}.npz")["codes"] for name in ("out", "iid", "large"))
        rng = np.random.default_rng(seed)
        synthetic, iid, large = (codec.decode(c[:, :-1], uniform_offsets(codec, len(c), rng), c[:, -1])
                                 for c in (out, iid, large))
        details = {k: meta[k] for k in ("sample_seconds", "snsynth", "mbi", "mbi_fix")}
        details[SAMPLES] = {"iid": iid, "large": large}
        return synthetic, meta["fit_seconds"], meta["fit_cpu_seconds"], {"epsilon_spent": eps, "delta": DELTA,
                                                                          "fine_columns": list(fine_columns), **details}
    return run


RUNNERS: dict[str, Callable[..., Fit]] = {
    "ours": product_engine("marginal"), "gan": product_engine("gan"), "nb": naive_bayes,
    **{m: peer(m) for m in PEERS}, "binned": binned_real,
    "resampled": resampled_real,
}


def ensure_peers_venv() -> Path:
    """The peers' venv (smartnoise-synth with the torch pin of constraints.txt), made if missing."""
    python = PEERS_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {PEERS_VENV} (smartnoise-synth; a few minutes)", flush=True)
    subprocess.run(["python3", "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", "-c", str(REPO / "constraints.txt"),
                    "smartnoise-synth"], check=True)
    return python


def ensure_mbi_fix() -> Path:
    """Copy mbi_fix.py (workspace ``shared/peers/``, not ours to commit) into benchmarks/_work/."""
    for source in MBI_FIX_SOURCES:
        if source.is_file():
            MBI_FIX_DIR.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, MBI_FIX_DIR / "mbi_fix.py")
            return MBI_FIX_DIR
    raise SystemExit("mbi_fix.py not found: the peers must sample with mbi's sampler fixed (mbi PR #145). "
                     f"Looked in {', '.join(map(str, MBI_FIX_SOURCES))}; set HGAN_MBI_FIX=/path/to/mbi_fix.py")


# --- one cell -------------------------------------------------------------------------

def score(synthetic: pd.DataFrame, train_rows: pd.DataFrame, holdout: pd.DataFrame, schema: Schema,
          seed: int, *, detection: bool = True) -> dict:
    outcome = tstr(synthetic, train_rows, holdout, schema, seed=seed, threads=THREADS)
    other = other_column_tstr(synthetic, train_rows, holdout, schema, seed=seed, threads=THREADS)
    return {"tstr_auroc": outcome["tstr_auroc"], "trtr_auroc": outcome["trtr_auroc"], "ratio": outcome["ratio"],
            "signal_kept": outcome["signal_kept"], "other_ratio": other["mean_ratio"],
            "other_columns": {k: v["ratio"] for k, v in other["columns"].items()},
            "tvd1": tvd(synthetic, train_rows, schema, order=1), "tvd2": tvd(synthetic, train_rows, schema, order=2),
            "detection": detection_auc(synthetic, holdout, schema, seed=seed, threads=THREADS) if detection else None}


def run_cell(table: str, eps: float, seed: int, method: str, *, peer_timeout: float,
             rows: int | None = None, peer_fine: tuple[str, ...] = ()) -> dict:
    schema, frame = load(table)
    train_rows, holdout = stratified_split(frame, schema, holdout=HOLDOUT, seed=seed)
    if rows is not None:  # a small-table check: a random sample of the training rows, same holdout
        train_rows = train_rows.sample(n=min(rows, len(train_rows)), random_state=seed)
    n = len(train_rows)
    record = {"table": table, "epsilon": eps, "seed": seed, "method": method, "train_rows": n,
              "holdout_rows": len(holdout), "date": now()}
    kwargs = {"timeout": peer_timeout} if method in PEERS else {}
    if method in (*PEERS, "nb", "binned"):
        kwargs["fine_columns"] = peer_fine
    started = time.perf_counter()
    try:
        synthetic, wall, cpu, details = RUNNERS[method](train_rows, schema, eps=eps, seed=seed, n=n, **kwargs)
    except PeerTimeout as exc:
        return {**record, "status": "timeout", "timeout_s": peer_timeout, "error": str(exc),
                "wall_seconds": time.perf_counter() - started}
    except Exception as exc:  # recorded, not hidden: a failed peer is a result too
        return {**record, "status": "error", "error": f"{type(exc).__name__}: {exc}"[-2000:],
                "wall_seconds": time.perf_counter() - started}
    scores = score(synthetic, train_rows, holdout, schema, seed)
    extra = {name: {"rows": len(rows), **score(rows, train_rows, holdout, schema, seed, detection=name != "large")}
             for name, rows in details.pop(SAMPLES, {}).items()}
    return {**record, "status": "ok", "fit_seconds": wall, "fit_cpu_seconds": cpu, "synthetic_rows": len(synthetic),
            **scores, **details, **extra, "wall_seconds": time.perf_counter() - started}


# --- results file -----------------------------------------------------------------------

def read_results(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"benchmark": "engines (issue 7)", "invocations": [], "results": []}


def write_results(path: Path, data: dict) -> None:
    """Atomic: write a temporary file, fsync, then replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def key(r: dict) -> tuple:
    return (r["table"], float(r["epsilon"]), int(r["seed"]), r["method"])


def run(args: argparse.Namespace, argv: list[str]) -> None:
    path = args.out / "engines.json"
    data = read_results(path)
    invocation = {"id": len(data["invocations"]), "command": " ".join(["python", "benchmarks/engines.py", *argv]),
                  "date": now(), "code": git_describe(), "machine": machine(), "peer_timeout_s": args.peer_timeout}
    data["invocations"].append(invocation)
    write_results(path, data)
    deadline = time.monotonic() + args.stop_after * 60 if args.stop_after else None
    for table in args.tables:
        for eps in args.eps:
            for seed in args.seeds:
                for method in args.methods:
                    done = {key(r): r for r in data["results"]}
                    previous = done.get((table, float(eps), seed, method))
                    if previous and (previous["status"] == "ok" or not args.retry):
                        continue
                    if deadline and time.monotonic() > deadline:
                        print(f"stopping: --stop-after {args.stop_after} min reached", flush=True)
                        return
                    print(f"{table} eps {eps:g} seed {seed} {method} ...", end=" ", flush=True)
                    record = {**run_cell(table, eps, seed, method, peer_timeout=args.peer_timeout, rows=args.rows,
                                         peer_fine=tuple(args.peer_fine_columns)),
                              "invocation": invocation["id"], "loadavg": os.getloadavg()}
                    data["results"] = [r for r in data["results"] if key(r) != key(record)] + [record]
                    write_results(path, data)
                    print(summary_line(record), flush=True)


def apply_overrides(overrides: list[str]) -> None:
    """``NAME=VALUE`` pairs set on ``hgan.appliance.marginal`` (VALUE a Python literal); an
    unknown NAME is an error, so a typo cannot pass for a variant."""
    from hgan.appliance import marginal
    for item in overrides:
        name, _, value = item.partition("=")
        if not name.isupper() or not hasattr(marginal, name):
            raise SystemExit(f"--set {item}: appliance/marginal.py has no constant {name!r}")
        setattr(marginal, name, ast.literal_eval(value))


def merge(args: argparse.Namespace) -> None:
    """Fold ``--out`` folders into the results file (module docstring)."""
    path = args.out / "engines.json"
    data = read_results(path)
    for source in args.sources:
        other = read_results(source / "engines.json")
        renumber = {}
        for invocation in other["invocations"]:
            renumber[invocation["id"]] = len(data["invocations"])
            data["invocations"].append({**invocation, "id": renumber[invocation["id"]]})
        incoming = {key(r): {**r, "invocation": renumber[r["invocation"]]} for r in other["results"]}
        data["results"] = [r for r in data["results"] if key(r) not in incoming] + list(incoming.values())
        print(f"{source}: {len(incoming)} records merged")
    write_results(path, data)


def summary_line(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('error', '')[:300]}"
    return (f"ratio {r['ratio']:.3f} other {r['other_ratio']:.3f} tvd1 {r['tvd1']:.3f} tvd2 {r['tvd2']:.3f} "
            f"det {r['detection']:.3f} fit {r['fit_seconds']:.1f}s (cpu {r['fit_cpu_seconds']:.1f}s)")


# --- machine ----------------------------------------------------------------------------

def now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")




def peers_versions() -> dict:
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        return {}
    script = ("import json\nfrom importlib.metadata import version\n"
              "print(json.dumps({d: version(d) for d in ('smartnoise-synth', 'mbi', 'opendp', 'jax')}))")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def machine() -> dict:
    import opacus
    import sklearn
    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "opacus": opacus.__version__,
            "sklearn": sklearn.__version__, "peers": peers_versions(), "loadavg_start": os.getloadavg()}


# --- report -----------------------------------------------------------------------------

FIGURES = ("ratio", "signal_kept", "other_ratio", "tvd1", "tvd2", "detection", "fit_seconds", "fit_cpu_seconds")


def summarise(results: list[dict]) -> pd.DataFrame:
    """Per (table, epsilon, method): mean, min and max over the seeds that ran, and what did not."""
    rows = []
    frame = pd.DataFrame(results)
    for (table, eps, method), group in frame.groupby(["table", "epsilon", "method"], sort=False):
        ok = group[group["status"] == "ok"]
        row = {"table": table, "epsilon": float(eps), "method": method, "seeds_ok": len(ok),
               "seeds": sorted(int(s) for s in ok["seed"]),
               "timeouts": int((group["status"] == "timeout").sum()), "errors": int((group["status"] == "error").sum())}
        for f in FIGURES:
            values = ok[f].astype(float) if f in ok and len(ok) else pd.Series(dtype=float)
            row[f], row[f + "_min"], row[f + "_max"] = values.mean(), values.min(), values.max()
        rows.append(row)
    return pd.DataFrame(rows)


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"


def spread(row: pd.Series, f: str, digits: int = 3) -> str:
    if row["seeds_ok"] == 0:
        return "-"
    if row["seeds_ok"] == 1:
        return fmt(row[f], digits)
    return f"{fmt(row[f], digits)} ({fmt(row[f + '_min'], digits)}-{fmt(row[f + '_max'], digits)})"



def table_markdown(s: pd.DataFrame, table: str) -> str:
    headers = ["eps", "method", "seeds", "outcome TSTR ratio", "signal kept", "other-column ratio", "tvd1",
               "tvd2", "detection AUC", "fit s (wall)", "fit s (CPU)"]
    rows = []
    order = {m: i for i, m in enumerate(METHODS)}
    part = s[s["table"] == table].sort_values(["epsilon", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    for _, r in part.iterrows():
        seeds = f"{r['seeds_ok']}" + (f", {r['timeouts']} timed out" if r["timeouts"] else "") + \
                (f", {r['errors']} failed" if r["errors"] else "")
        rows.append([f"{r['epsilon']:g}", LABELS[r["method"]], seeds, spread(r, "ratio"), spread(r, "signal_kept", 2),
                     spread(r, "other_ratio"), spread(r, "tvd1"), spread(r, "tvd2"), spread(r, "detection"),
                     spread(r, "fit_seconds", 1), spread(r, "fit_cpu_seconds", 1)])
    return markdown(headers, rows)


SAMPLER_FIGURES = ("ratio", "other_ratio", "tvd1", "tvd2", "detection")
LARGE_FIGURES = ("ratio", "other_ratio", "tvd2")  # the large sample has no detection figure


def sampler_means(results: list[dict], table: str) -> dict[tuple[float, str], dict]:
    """Per (epsilon, method), over the seeds whose record has the extra samples: their number,
    the mean figures of rows drawn independently (``iid``: the peers' i.i.d. sample, every
    other method's own sample) and of the ``large`` sample, and each seed's i.i.d. figures."""
    groups: dict[tuple[float, str], list[dict]] = {}
    for r in results:
        if r["table"] == table and r["status"] == "ok" and "large" in r:
            groups.setdefault((float(r["epsilon"]), r["method"]), []).append(r)
    order = {m: i for i, m in enumerate(METHODS)}
    out = {}
    for (eps, method), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order[kv[0][1]])):
        iid, large = [r["iid"] if method in PEERS else r for r in group], [r["large"] for r in group]
        out[eps, method] = {"seeds": len(group), "iid": {f: np.mean([x[f] for x in iid]) for f in SAMPLER_FIGURES},
                            "large": {f: np.mean([x[f] for x in large]) for f in LARGE_FIGURES},
                            "per_seed": {int(r["seed"]): x for r, x in zip(group, iid)}}
    return out


def sampler_markdown(means: dict[tuple[float, str], dict]) -> str:
    """The table of one table's ``sampler_means``."""
    rows = [[f"{eps:g}", LABELS[method], str(m["seeds"]), *(fmt(m["iid"][f]) for f in SAMPLER_FIGURES),
             *(fmt(m["large"][f]) for f in LARGE_FIGURES)]
            for (eps, method), m in means.items()]
    headers = ["eps", "method", "seeds", "i.i.d.: outcome ratio", "other-column", "tvd1", "tvd2", "detection",
               f"{LARGE_FACTOR}x rows: outcome ratio", "other-column", "tvd2"]
    return markdown(headers, rows) if rows else "No record has the extra samples yet."


def goals(s: pd.DataFrame, table: str, eps: float) -> str:
    """One line: the issue's goals for ``ours`` at (table, eps), on the means over the seeds that ran."""
    part = s[(s["table"] == table) & (s["epsilon"] == eps) & (s["seeds_ok"] > 0)].set_index("method")
    if "ours" not in part.index:
        return f"eps {eps:g}: ours not run."
    o = part.loc["ours"]
    checks = []

    def against(methods: Sequence[str], figure: str, better: Callable[[float, float], bool], label: str) -> None:
        present = [m for m in methods if m in part.index]
        missing = [m for m in methods if m not in part.index]
        if present:
            ok = all(better(o[figure], part.loc[m, figure]) for m in present)
            vs = ", ".join(f"{LABELS[m]} {fmt(part.loc[m, figure])}" for m in present)
            checks.append(f"{label} {fmt(o[figure])} vs {vs}: {'met' if ok else 'NOT met'}"
                          + (f" (no {', '.join(missing)})" if missing else ""))
        else:
            checks.append(f"{label}: no peer figures ({', '.join(missing)})")

    against(["aim", "aim_outcome", "nb"], "ratio", lambda a, b: a >= b, "outcome ratio >= AIM (both), NB")
    other_ok = o["other_ratio"] >= 0.90
    against(["aim", "aim_outcome"], "other_ratio", lambda a, b: a >= b,
            f"other-column (>= 0.90: {'met' if other_ok else 'NOT met'}) >= AIM")
    against(["aim", "aim_outcome"], "tvd2", lambda a, b: a < b, "tvd2 < AIM")
    against(["nb", "mst", "aim", "aim_outcome"], "detection", lambda a, b: a < b, "detection < every peer")
    against(["aim", "aim_outcome"], "fit_seconds", lambda a, b: a <= b / 5, "fit wall <= AIM / 5")
    seeds = f"ours on {int(o['seeds_ok'])} seed(s)"
    return f"- eps {eps:g} ({seeds}): " + "; ".join(checks) + "."


def same_sampler_goals(means: dict[tuple[float, str], dict], eps: float) -> str | None:
    """One line: ours against AIM (default workload) when both draw rows independently
    (``means``: one table's ``sampler_means``), each figure with its ``paired_difference``."""
    if (eps, "ours") not in means or (eps, "aim") not in means:
        return None
    o, a = means[eps, "ours"], means[eps, "aim"]
    checks = [f"{label} {fmt(o['iid'][f])} vs {fmt(a['iid'][f])}: "
              f"{'met' if better(o['iid'][f], a['iid'][f]) else 'NOT met'}"
              f"{paired_difference(o['per_seed'], a['per_seed'], f)}"
              for label, f, better in (("outcome ratio >=", "ratio", lambda x, y: x >= y),
                                       ("other-column >=", "other_ratio", lambda x, y: x >= y),
                                       ("tvd2 <", "tvd2", lambda x, y: x < y),
                                       ("detection <", "detection", lambda x, y: x < y))]
    return (f"- eps {eps:g}, both sampled i.i.d. (ours on {o['seeds']}, AIM on "
            f"{a['seeds']} seed(s)), ours vs AIM (default workload): " + "; ".join(checks) + ".")


def paired_difference(ours: dict[int, dict], peer: dict[int, dict], figure: str) -> str:
    """`` (ours - AIM d +- se)``: the mean over the seeds both ran of the per-seed difference
    (a seed is one split, the same for both), and its standard error; ``, within 2 SE`` when
    the difference is not outside twice that. Empty for fewer than 2 common seeds."""
    diffs = [ours[k][figure] - peer[k][figure] for k in sorted(set(ours) & set(peer))]
    if len(diffs) < 2:
        return ""
    mean, se = float(np.mean(diffs)), float(np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
    return f" (ours - AIM {mean:+.3f} +- {se:.3f}{', within 2 SE' if abs(mean) <= 2 * se else ''})"


def report(args: argparse.Namespace) -> None:
    path = args.out / "engines.json"
    data = read_results(path)
    if not data["results"]:
        raise SystemExit(f"{path}: no results yet")
    s = summarise(data["results"])
    inv = data["invocations"]
    m = inv[-1]["machine"]
    peers = m.get("peers", {})
    lines = [
        "# Engines benchmark (issue 7)", "",
        "Script: `benchmarks/engines.py` (its docstring gives the method); the peers run in "
        "`benchmarks/peers_runner.py` inside `benchmarks/_work/peers`. Raw numbers, per seed, with the "
        f"invocation that produced them: `{path.relative_to(REPO) if path.is_relative_to(REPO) else path}`.", "",
        f"**Commands** ({len(inv)} invocations, appended to one results file):", "",
        *[f"- `{i['command']}` ({i['date']}, code {i['code']}"
          f"{'; ' + str(sum(r['invocation'] == i['id'] for r in data['results'])) + ' records kept'}"
          f"{'; ' + i['note'] if i.get('note') else ''})" for i in inv], "",
        f"**Machine**: nproc {m['nproc']}, CPU \"{m['cpu']}\", Python {m['python']}, torch {m['torch']} "
        f"(1 thread), opacus {m['opacus']}, scikit-learn {m['sklearn']}; peers: smartnoise-synth "
        f"{peers.get('smartnoise-synth', '?')}, mbi {peers.get('mbi', '?')} with `mbi_fix` (mbi PR #145), "
        f"opendp {peers.get('opendp', '?')}, jax {peers.get('jax', '?')}. A shared 2-core VM: other jobs ran "
        "beside these (1-minute load average at the start of each record is in the JSON), so wall times are "
        "noisy; CPU seconds are given beside them. Report written "
        f"{now()}.", "",
        "Each cell: `stratified_split(holdout=0.2, seed)`, delta 1e-6, as many synthetic rows as training rows. "
        "Figures are means over the seeds that ran, (min-max) when more than one. Outcome ratio: TSTR AUROC / "
        "TRTR AUROC on the holdout; signal kept: (TSTR - 0.5) / (TRTR - 0.5); other-column: mean TSTR ratio "
        "over categorical columns whose rarest class holds >= 5% of the training rows (rotterdam: meno, size, "
        "grade, hormon, chemo; flchain: sex only); tvd1/tvd2: mean total-variation distance of one-/two-way "
        "marginals against the training rows (16 bins over the public bounds); detection: 5-fold CV AUC of "
        "a classifier telling holdout rows from as many synthetic rows (0.5 = indistinguishable).", "",
    ]
    for table in [t for t in TABLES if t in set(s["table"])]:
        means = sampler_means(data["results"], table)
        lines += [f"## {table}", "", table_markdown(s, table), "", fine_columns_line(data["results"], table), "",
                  "Against the issue's goals (ours vs peers, means over seeds that ran):", "",
                  *[goals(s, table, e) for e in sorted(set(s[s["table"] == table]["epsilon"]))], "",
                  f"### {table}: the same fits, rows drawn independently, and {LARGE_FACTOR}x as many rows", "",
                  SAMPLER_NOTE, "", sampler_markdown(means), "",
                  *[line for e in EPSILONS if (line := same_sampler_goals(means, e))], ""]
    missing = not_run(data["results"])
    lines += ["## Notes on the peers", "", *PEER_NOTES, "",
              "## What did not run", "", f"Of the full plan (both tables, eps 1, 3.5 and 10, seeds 0-2, {len(METHODS) - len(REFERENCES)} "
              "methods and the references):",
              "", *(missing or ["Everything in the plan ran."]), ""]
    (args.report_to).write_text("\n".join(lines))
    print(f"wrote {args.report_to}")


SAMPLER_NOTE = (
    "mbi samples by rounding each conditional's counts (a stratified draw); the other methods draw rows "
    "independently. Here the peers' fits are sampled again, as many rows drawn independently (mbi's "
    "`method=\"sample\"`): every row of this table's first five figures is then an i.i.d. sample. The last "
    f"three are {LARGE_FACTOR}x the training rows by each method's own sampler: a released generator can be "
    "sampled without limit, and with more rows the classifiers and the TVD see less of the sampling noise "
    "(the TVD floor of the real rows resampled falls too). Both are post-processing of the same fit. Only "
    "records run since these samples were added (commit f24e59b) are counted. In the goal lines below, "
    "`ours - AIM d +- se` is the mean over seeds of the per-seed difference (one seed is one split for both) "
    "and its standard error; `within 2 SE` marks a difference the seeds' spread does not settle either way.")


PEER_NOTES = [
    "- Same domain as the product: every column is the product codec's code (numerics in 16 bins over "
    "the public bounds, or 32 for the columns listed as fine under each table; one code per integer for "
    "small integer ranges; missing as its own code), given "
    "to snsynth through `LabelTransformer`s fitted on a public table of every code, so no preprocessor "
    "budget and no code inferred from the data. Their codes come back through `Codec.decode` with uniform "
    "offsets inside each bin: they model bins, not numbers. The product places numbers inside a bin by its "
    "DP within-bin histograms (`appliance/marginal.py` rule 1b), paid from its own epsilon; that is a "
    "difference of method (what uniform offsets alone cost is the reference row: the real training rows "
    "redrawn uniformly in their bins). Fine columns matter most to the peers: with 16 bins for every "
    "column (the runs before rule 6, in git history), AIM's detection AUC (default workload) was 0.76 and "
    "0.75 on rotterdam at eps 3.5 and 10 (0.69 and 0.66 with `nodes` fine) and 0.80, 0.77 and 0.74 on "
    "flchain at eps 1, 3.5 and 10 (0.76, 0.73 and 0.63 with kappa, lambda and creatinine fine).",
    "- mbi's sampler is fixed (`mbi_fix.apply()` after fitting, before sampling; from the workspace's "
    "`shared/peers/`, copied into `benchmarks/_work/` at run time, not committed: it carries no licence).",
    "- `aim`: snsynth's AIMSynthesizer as shipped (workload: all pairs with <= 10,000 cells, rounds "
    "16 x columns, max model size 80 MB). `aim_outcome`: the same with `get_workload` overridden (snsynth "
    "takes no workload argument) to every (column, target) pair, every pair and every (column, column, "
    "target) triple: the marginals the marginal engine measures or selects from.",
    "- The peers' Gaussian noise comes from OpenDP, which takes no seed: a peer's run is not reproducible "
    "bit for bit (numpy's generator, which drives their selections and mbi's sampler, is seeded).",
    "- snsynth 1.0.8's MST passes the exact row count (`known_total=len(data)`) to mbi's estimator, an "
    "exact count outside the DP accounting (in the peer's favour, if anything); AIM estimates the total "
    "from its noisy measurements. Every method here samples an explicit n (the training rows).",
    "- Fit time of a peer is measured inside its process (fit only; not its start-up, import or sampling).",
    "- Sampling: mbi's `synthetic_data` (method \"round\") allocates each clique's rows by rounded counts, "
    "a stratified draw, so the peers' one- and two-way TVD can sit below the noise of independent draws; the "
    "product's generator (and the naive Bayes) draw rows independently, as a researcher sampling a released "
    "generator does. Each table's last section scores the same peer fits sampled i.i.d. (mbi's "
    "`method=\"sample\"`).",
    "- Every record in this file decodes numbers with the rule of commit 3739658 (a rounded integer or "
    "decimal stays in the bin it was drawn in). Before it, a narrow bin leaked draws into its neighbours, "
    "which cost the peers (uniform inside a bin) more than the product: AIM's two-way TVD on flchain at "
    "eps 10 went from 0.033 to 0.018 with that fix alone.",
]


def fine_columns_line(results: list[dict], table: str) -> str:
    """Which columns each method had at the fine bins (rule 6 of the marginal engine), per epsilon."""
    seen: dict[float, dict[str, set]] = {}
    for r in results:
        if r["table"] == table and r["status"] == "ok" and r["method"] != "gan":
            choice = ", ".join(r.get("fine_columns") or []) or "none"
            seen.setdefault(float(r["epsilon"]), {}).setdefault(choice, set()).add(LABELS[r["method"]])
    parts = [f"eps {e:g}: " + "; ".join(f"{choice} for {', '.join(sorted(methods))}"
                                         for choice, methods in sorted(by.items()))
             for e, by in sorted(seen.items())]
    return ("Fine columns (32 bins instead of 16; the marginal engine chooses them by rule 6 of "
            "`appliance/marginal.py`, the other methods were given its choice with `--peer-fine-columns`; "
            "a record from before that rule has none): " + ". ".join(parts) + ".")


def not_run(results: list[dict]) -> list[str]:
    """Per (table, method): the (epsilon, seeds) of the full plan with no result, and those that failed."""
    have = {key(r): r["status"] for r in results}
    out = []
    for table in TABLES:
        for method in METHODS:
            absent, bad = [], []
            for e in EPSILONS:
                seeds = [s for s in SEEDS if (table, e, s, method) not in have]
                if seeds:
                    absent.append(f"eps {e:g} (seed {', '.join(map(str, seeds))})")
                bad += [f"eps {e:g} seed {s}: {have[(table, e, s, method)]}" for s in SEEDS
                        if have.get((table, e, s, method), "ok") != "ok"]
            if absent:
                out.append(f"- {table}, {LABELS[method]}: not run at " + "; ".join(absent))
            if bad:
                out.append(f"- {table}, {LABELS[method]}: " + "; ".join(bad))
    return out


# --- command line -----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=["run", "report", "merge"], default="run")
    parser.add_argument("sources", nargs="*", type=Path, help="merge: folders written with --out")
    parser.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES))
    parser.add_argument("--eps", nargs="+", type=float, default=list(EPSILONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="rotterdam, eps 3.5, seed 0, nb/mst/ours: a smoke test")
    parser.add_argument("--peer-timeout", type=float, default=PEER_TIMEOUT, help="seconds per peer run")
    parser.add_argument("--stop-after", type=float, default=None, help="start no new fit after this many minutes")
    parser.add_argument("--retry", action="store_true", help="re-run cells recorded as timeout or error")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a constant of appliance/marginal.py for this run (a variant of "
                             "'ours', e.g. --set FIT_BATCH=2048); use with --out, never into the main results")
    parser.add_argument("--peer-fine-columns", nargs="+", default=[], metavar="COLUMN",
                        help="give the peers, the naive Bayes and the binned reference these columns at the "
                             "codec's fine bins (the ones the marginal engine chose for the same cells: its "
                             "records' fine_columns)")
    parser.add_argument("--rows", type=int, default=None,
                        help="train on this many of the training rows (sampled with the seed; the holdout "
                             "is unchanged): a small-table check; use with --out, never into the main results")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default benchmarks/results; benchmarks/_work/results with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if (args.overrides or args.rows) and args.out is None:
        parser.error("--set and --rows run a variant: give it its own --out folder")
    args.out = args.out or HERE / ("_work/results" if args.quick else "results")
    args.report_to = HERE / ("_work/ENGINES.md" if args.quick else "ENGINES.md")
    torch.set_num_threads(THREADS)
    apply_overrides(args.overrides)
    if args.action == "report":
        report(args)
    elif args.action == "merge":
        merge(args)
    else:
        run(args, argv)


if __name__ == "__main__":
    main()
