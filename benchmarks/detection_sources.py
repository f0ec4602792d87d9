"""Where a generator's detection AUC comes from: each column left out, and each column alone.

Usage::

    python benchmarks/detection_sources.py [--tables T ...] [--eps E ...] [--seeds S ...]
    python benchmarks/detection_sources.py report

Each cell (table, epsilon, seed) is the engines benchmark's (``engines.py``: the stratified
80/20 split, delta 1e-6, as many synthetic rows as training rows). Three samples are scored:

- ``ours``: the marginal engine's fit, sampled (``engines.product_engine("marginal")``);
- ``binned``: the training rows re-drawn uniformly inside the bins of the codec the engine
  chose (its fine columns): what a perfect model of the bins would give;
- ``resampled``: the training rows drawn with replacement: the floor for i.i.d. rows.

For each, ``audit.utility.detection_auc`` (real holdout rows against synthetic rows, 5-fold
CV) on every modelled column, on all but one column (each in turn), and on one column alone.
A column whose removal takes the AUC down carries what tells the rows apart; where ours'
drop is larger than the binned reference's, the generator misses a relationship the bins
hold. Results: ``benchmarks/results/detection_sources.json`` (one record per cell, appended as
each is done; a cell already there is skipped); ``report`` writes ``benchmarks/DETECTION.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import engines
from _common import git_describe, markdown
from hgan.audit.utility import detection_auc, stratified_split
from hgan.release.schema import Schema

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "detection_sources.json"
REPORT = HERE / "DETECTION.md"
SAMPLES = ("ours", "binned", "resampled")


def sources(synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, seed: int) -> dict:
    """Detection AUC on all modelled columns, without each, and on each alone."""
    columns = schema.modelled

    def auc(cols: list) -> float:
        return detection_auc(synthetic, holdout, schema, seed=seed, columns=cols)

    return {"all": auc(columns),
            "without": {c.name: auc([k for k in columns if k.name != c.name]) for c in columns},
            "alone": {c.name: auc([c]) for c in columns}}


def run_cell(table: str, eps: float, seed: int) -> dict:
    schema, frame = engines.load(table)
    train_rows, holdout = stratified_split(frame, schema, holdout=engines.HOLDOUT, seed=seed)
    n = len(train_rows)
    ours, _, _, details = engines.product_engine("marginal")(train_rows, schema, eps=eps, seed=seed, n=n)
    fine = tuple(details["fine_columns"])
    rows = {"ours": ours,
            "binned": engines.binned_real(train_rows, schema, eps=eps, seed=seed, n=n, fine_columns=fine)[0],
            "resampled": engines.resampled_real(train_rows, schema, eps=eps, seed=seed, n=n)[0]}
    return {"table": table, "epsilon": eps, "seed": seed, "fine_columns": list(fine), "date": engines.now(),
            **{name: sources(rows[name], holdout, schema, seed) for name in SAMPLES}}


def run(args: argparse.Namespace) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"invocations": [], "results": []}
    data["invocations"].append({"command": "python benchmarks/detection_sources.py " + " ".join(sys.argv[1:]),
                                "date": engines.now(), "code": git_describe(), "machine": engines.machine()})
    done = {(r["table"], r["epsilon"], r["seed"]) for r in data["results"]}
    for table in args.tables:
        for eps in args.eps:
            for seed in args.seeds:
                if (table, eps, seed) in done:
                    continue
                started = time.perf_counter()
                data["results"].append(run_cell(table, eps, seed))
                engines.write_results(RESULTS, data)
                print(f"{table} eps {eps} seed {seed}: ours {data['results'][-1]['ours']['all']:.3f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)


def report() -> None:
    data = json.loads(RESULTS.read_text())
    results = data["results"]
    parts = [f"# Detection sources\n\nScript: `benchmarks/detection_sources.py` (its docstring gives the method); "
             f"raw numbers in `{RESULTS.relative_to(HERE.parent)}`.\n\n**Commands**:\n"]
    parts += [f"- `{i['command']}` ({i['date']}, code {i['code']}; torch {i['machine']['torch']}, "
              f"{i['machine']['nproc']} shared cores)" for i in data["invocations"]]
    parts.append("\nFigures are means over the seeds. *all*: detection AUC on every modelled column; "
                 "*drop*: *all* minus the AUC without that column (how much of the detection the column "
                 "carries); *alone*: the AUC on that column alone. 0.5 = indistinguishable.\n")
    for (table, eps), cell in pd.DataFrame(results).groupby(["table", "epsilon"], sort=False):
        records = cell.to_dict("records")

        def mean(figure) -> float:
            return float(np.mean([figure(r) for r in records]))

        drop = {(s, name): mean(lambda r: r[s]["all"] - r[s]["without"][name])
                for s in SAMPLES for name in records[0][s]["without"]}
        names = sorted(records[0]["ours"]["alone"], key=lambda name: -drop["ours", name])
        rows = [[name] + [f"{drop[s, name]:+.3f} / {mean(lambda r: r[s]['alone'][name]):.3f}" for s in SAMPLES]
                for name in names]
        alls = ", ".join(f"{s} {mean(lambda r: r[s]['all']):.3f}" for s in SAMPLES)
        parts.append(f"## {table}, epsilon {eps:g} (seeds: {len(records)})\n\nall columns: {alls}.\n")
        parts.append(markdown(["column", *(f"{s}: drop / alone" for s in SAMPLES)], rows) + "\n")
    REPORT.write_text("\n".join(parts))
    print(f"wrote {REPORT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", nargs="?", choices=("run", "report"), default="run")
    parser.add_argument("--tables", nargs="+", default=list(engines.TABLES), choices=engines.TABLES)
    parser.add_argument("--eps", nargs="+", type=float, default=[10.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(engines.SEEDS))
    args = parser.parse_args()
    torch.set_num_threads(engines.THREADS)
    run(args) if args.action == "run" else report()


if __name__ == "__main__":
    main()
