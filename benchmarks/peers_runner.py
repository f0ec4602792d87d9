"""Runs one peer synthesizer (MST, AIM) inside the peers venv; called by ``benchmarks/engines.py``.

Not part of the package and never imported by it: it runs under
``benchmarks/_work/peers/bin/python`` (smartnoise-synth 1.0.8, mbi 1.1.0), which the
benchmark creates. It reads only files and writes only files:

    peers_runner.py METHOD --input codes.npz --output out.npz --meta out.json
                    --epsilon E --delta D --seed S --rows N --mbi-fix DIR
                    [--iid-output iid.npz] [--large-output large.npz --large-rows M]

Input (``codes.npz``): ``codes`` (n, k) int64, the product codec's codes of every
feature and the target as the last column; ``cards`` (k,), the number of codes of each
column, from the schema alone. Output: ``codes`` (N, k) int64 and a JSON file with
timings and what the run did.

Rules:
1. Same public domain as the product: each column is given to snsynth through a
   ``LabelTransformer`` fitted on a *public* table holding every code 0..cards-1, so
   snsynth infers nothing from the data and spends no preprocessor budget; the domain
   includes codes with no row.
2. mbi's sampler is fixed before sampling (``mbi_fix.apply()``, a backport of mbi 2.0.0,
   PR #145): post-processing, the privacy cost is unchanged.
3. ``aim_outcome``: AIM with an outcome-centred workload, the marginals the product's
   marginal engine measures or selects from: every (column, target) pair, every pair of
   columns and every (column, column, target) triple (snsynth's ``AIMSynthesizer`` takes
   no workload argument, so ``get_workload`` is overridden; AIM's candidates are the
   workload's downward closure, weighted by overlap with it, as in mbi's aim.py).
4. Seeds: ``numpy.random`` is seeded (AIM's and MST's selections, mbi's sampler); the
   Gaussian noise comes from OpenDP's sampler, which takes no seed, so runs are not
   reproducible bit for bit.
5. Extra samples of the same fitted model (post-processing), drawn after the main one so
   that it is unchanged: ``--iid-output``, as many rows drawn independently (mbi's
   ``method="sample"``; its default ``"round"`` rounds each conditional's counts, a
   stratified draw); ``--large-output``, ``--large-rows`` rows by the default sampler.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = ("mst", "aim", "aim_outcome")


def public_transformer(cards: list[int]):
    """Rule 1: a TableTransformer fitted on every code of every column, nothing else."""
    from snsynth.transform import LabelTransformer, TableTransformer

    transformer = TableTransformer([LabelTransformer(nullable=False) for _ in cards])
    width = max(cards)
    public = pd.DataFrame({f"c{j}": np.arange(width) % size for j, size in enumerate(cards)})
    transformer.fit(public)
    for t, size in zip(transformer.transformers, cards):
        assert t.categories == list(range(size)), "LabelTransformer did not keep codes as they are"
    return transformer


def outcome_workload(columns: list[str]) -> list[tuple[str, ...]]:
    """Rule 3: (column, target) pairs, all pairs, (column, column, target) triples."""
    *features, target = columns
    return ([(c, target) for c in features] + list(itertools.combinations(columns, 2))
            + [(a, b, target) for a, b in itertools.combinations(features, 2)])


def synthesizer(method: str, epsilon: float, delta: float):
    from snsynth.aim import AIMSynthesizer
    from snsynth.mst import MSTSynthesizer

    if method == "mst":
        return MSTSynthesizer(epsilon=epsilon, delta=delta)
    if method == "aim":
        return AIMSynthesizer(epsilon=epsilon, delta=delta)

    class OutcomeAIM(AIMSynthesizer):
        @staticmethod
        def get_workload(data, degree, max_cells, num_marginals=None):
            workload = outcome_workload(list(data.domain.attrs))
            return [cl for cl in workload if data.domain.size(cl) <= max_cells]

    return OutcomeAIM(epsilon=epsilon, delta=delta)


def run(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(args.mbi_fix))
    import mbi  # noqa: F401
    import mbi_fix
    import snsynth

    loaded = np.load(args.input)
    codes, cards = loaded["codes"], [int(c) for c in loaded["cards"]]
    frame = pd.DataFrame(codes, columns=[f"c{j}" for j in range(codes.shape[1])])
    np.random.seed(args.seed)
    synth = synthesizer(args.method, args.epsilon, args.delta)
    log = io.StringIO()
    started, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(log):  # snsynth prints; stdout stays quiet
        synth.fit(frame, transformer=public_transformer(cards))
    fit_seconds, fit_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    mbi_fix.apply()
    assert mbi_fix.is_applied()
    started = time.perf_counter()
    with contextlib.redirect_stdout(log):
        rows = synth.sample(args.rows)
    sample_seconds = time.perf_counter() - started
    np.savez(args.output, codes=_checked(rows, args.rows, cards))
    if args.iid_output:  # rule 5: the same fitted model, rows drawn independently
        field = type(synth.synthesizer)  # a frozen dataclass: the sampler is switched on its class
        fixed = field.synthetic_data
        field.synthetic_data = lambda model, rows=None, method="sample": fixed(model, rows, method="sample")
        try:
            with contextlib.redirect_stdout(log):
                rows = synth.sample(args.rows)
        finally:  # the large sample below uses mbi's own sampler again
            field.synthetic_data = fixed
        np.savez(args.iid_output, codes=_checked(rows, args.rows, cards))
    if args.large_output:
        with contextlib.redirect_stdout(log):
            rows = synth.sample(args.large_rows)
        np.savez(args.large_output, codes=_checked(rows, args.large_rows, cards))
    return {"method": args.method, "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu_seconds,
            "sample_seconds": sample_seconds,
            "mbi_fix": True, "snsynth": getattr(snsynth, "__version__", None) or _version("smartnoise-synth"),
            "mbi": _version("mbi"), "log_tail": log.getvalue()[-2000:]}


def _checked(rows, n: int, cards: list[int]) -> np.ndarray:
    out = np.asarray(pd.DataFrame(rows).to_numpy(), dtype=np.int64)
    if out.shape != (n, len(cards)) or (out < 0).any() or (out >= np.array(cards)).any():
        raise SystemExit(f"peer output has shape {out.shape} or codes outside the domain")
    return out


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=METHODS)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--meta", type=Path, required=True)
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--mbi-fix", type=Path, required=True, help="folder holding mbi_fix.py")
    parser.add_argument("--iid-output", type=Path, help="also --rows rows drawn i.i.d. (mbi's method='sample')")
    parser.add_argument("--large-output", type=Path, help="also --large-rows rows, mbi's default sampler")
    parser.add_argument("--large-rows", type=int, default=0)
    args = parser.parse_args()
    args.meta.write_text(json.dumps(run(args), indent=1) + "\n")


if __name__ == "__main__":
    main()
