"""Scale check: a generated 48-column, 10,000-row table with many missing values, end to end.

Not real data: a generator of the shape a new user's table has (numbers with heavy tails and
25% missing, integer-coded categories with "NA", string categories with blanks, an id, a string
outcome), so that `hgan schema draft`, `hgan train`, `hgan sample` and `hgan audit` are timed
on a wide table. Utility figures on it mean little (its columns are nearly independent).

Usage::

    python benchmarks/wide_table.py [--rows 10000] [--epsilon 3.5] [--keep DIR]

Steps, each a subprocess of the `hgan` next to this Python (wall time includes start-up):
write the CSV (seed 3), draft a schema (`--target outcome --id patient_id`), delete its
`draft = true` line (a review in a real deployment), split 80/20 at random (seed 0), train
on the 80% (default engine), sample 1,000 rows of `outcome=yes`, audit with the 20% holdout.
Prints one JSON object with the seconds of each step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HGAN = str(Path(sys.executable).with_name("hgan"))


def make_table(rows: int, seed: int = 3) -> pd.DataFrame:
    """18 numeric, 12 integer-coded, 14 string-categorical columns, age, sex, id and outcome."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=rows)
    cols: dict[str, object] = {"patient_id": [f"P{i:06d}" for i in range(rows)]}
    for k in range(18):
        x = np.exp(rng.normal(3 + 0.3 * z, 0.8)) if k % 3 == 0 else rng.normal(50 + 10 * z * (k % 2), 12, rows)
        x = np.round(x, 2).astype(object)
        x[rng.random(rows) < 0.25] = ""
        cols[f"lab_{k}"] = x
    for k in range(12):
        c = rng.integers(1, 6, rows).astype(object)
        c[rng.random(rows) < 0.15] = "NA"
        cols[f"code_{k}"] = c
    for k in range(14):
        c = rng.choice(["low", "mid", "high", "very high"], rows).astype(object)
        c[rng.random(rows) < 0.3] = ""
        cols[f"grade_{k}"] = c
    cols["age"] = rng.integers(18, 95, rows)
    cols["sex"] = rng.choice(["F", "M"], rows)
    cols["outcome"] = np.where(z + rng.normal(size=rows) > 0.8, "yes", "no")
    return pd.DataFrame(cols)


def timed(args: list[str], **kwargs) -> tuple[float, float]:
    """Run one `hgan` subprocess (stdout discarded unless given): its wall seconds, and its
    user + system CPU seconds (robust to a busy machine)."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([HGAN, *args], check=True, **kwargs)
    wall = round(time.perf_counter() - started, 1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--epsilon", type=float, default=3.5)
    parser.add_argument("--keep", type=Path, default=None, help="work in this new directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hgan-wide-"))
    work.mkdir(parents=True, exist_ok=args.keep is None)
    table = make_table(args.rows)
    table.to_csv(work / "wide.csv", index=False)
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}

    def step(name: str, args: list[str], **kwargs) -> None:
        seconds[name], cpu_seconds[name] = timed(args, **kwargs)

    with open(work / "schema.toml", "w") as out:
        step("schema draft", ["schema", "draft", str(work / "wide.csv"), "--target", "outcome", "--id", "patient_id"],
              stdout=out, stderr=subprocess.DEVNULL)
    text = (work / "schema.toml").read_text().replace("draft = true\n", "")
    (work / "schema.toml").write_text(text)
    rows = pd.read_csv(work / "wide.csv", dtype=str, keep_default_na=False).sample(frac=1, random_state=0)
    cut = int(0.8 * len(rows))
    rows.iloc[:cut].to_csv(work / "train.csv", index=False)
    rows.iloc[cut:].to_csv(work / "holdout.csv", index=False)
    schema = str(work / "schema.toml")
    step("train", ["train", str(work / "train.csv"), "--schema", schema, "--epsilon", str(args.epsilon),
                    "--out", str(work / "model"), "--json"])
    step("sample 1000 (outcome=yes)", ["sample", str(work / "model"), "-n", "1000", "--out",
                                        str(work / "synthetic.csv"), "--where", "outcome=yes"])
    step("audit", ["audit", str(work / "model"), "--train", str(work / "train.csv"), "--holdout",
                    str(work / "holdout.csv"), "--schema", schema, "--out", str(work / "report"),
                    "--seed", "0", "--json"])
    report = json.loads((work / "report" / "report.json").read_text())
    print(json.dumps({"rows": args.rows, "columns": table.shape[1], "epsilon": args.epsilon, "seconds": seconds,
                      "cpu_seconds": cpu_seconds,
                      "dp_consistency": report["dp_consistency"]["status"], "work": str(work)}, indent=2))


if __name__ == "__main__":
    main()
