"""The audit facade: attack one candidate with every attack of the threat model and measure its utility.

``audit(*, model_dir=..., train, holdout, schema, seed)`` audits a generator
(white-box and black-box: the adversary of DESIGN.md holds the weights);
``audit(*, synthetic=..., ...)`` audits any synthetic table, black-box only.
Both return one ``AuditReport`` (``audit/report.py``).

Rules, in the order the facade applies them:
1. Exactly one of ``model_dir`` and ``synthetic``; ``train``, ``holdout`` and
   ``synthetic`` are validated frames (``appliance/data.load_table``), and a
   model must encode the same modelled columns as ``schema``. Anything else is
   ``InvalidInput("audit.inputs")``.
2. Rows: members are all training rows. The holdout is shuffled (seeded) and
   cut into two halves of equal size: the first are the non-members (targets
   never used in training), the second the reference (the attacker's population data, used only by the
   calibrated membership attacks); an odd row left over is not used. The
   Anonymeter risks take both halves as their control rows: none of their
   attacks reads the control rows, and a larger control set makes their
   size-matched comparison less weak (``attacks/singling_out.py`` rule 3).
   The report says so (``data``).
3. With a model: as many synthetic rows as training rows are sampled, seeded.
4. Black-box membership attacks (``attacks/membership.py``) always run; the
   white-box attacks (``attacks/whitebox.py``) only with a model, without a
   reference generator: the calibrated attack uses the population baseline of
   the reference rows (its notes say so). Then singling out (univariate and
   multivariate), linkability, and attribute inference of the target and the
   first modelled columns, at most ``INFERENCE_MAX_SECRETS`` secrets in all
   (bounds the time on wide tables).
5. Copies (``copies.py``): exact copies of members and non-members among the
   synthetic rows, and the binned distances to the closest synthetic row.
   Utility (``utility.py``): TSTR on the whole real holdout; against the
   training rows the marginals, the per-column fidelity (TVD, KS, missing
   rates) and the association difference; against the holdout the mean one-
   and two-way total variation and the detection AUC; and all but TSTR again
   within each class of the target (``per_class``).
   ``other_column_tstr`` is not run: its docstring says it decides which
   columns to score from the real training rows, a benchmark figure for
   public data only.
6. DP consistency (issue 3, item 3): for a private model (or a synthetic table
   audited against a ``claimed_epsilon``), every membership attack is checked:
   its empirical epsilon lower bound (95%, Clopper-Pearson, Jagielski et al.
   2020) above the claimed epsilon, or its best advantage (max over the ROC
   grid of TPR - FPR) above ``estimates.max_advantage(epsilon, delta)`` by
   more than sampling can explain, marks it broken. The slack is the
   Dvoretzky-Kiefer-Wolfowitz bound (Massart's constant) on both empirical
   CDFs, sqrt(ln(4 / alpha) / 2n) for each of the n members and non-members
   attacked, alpha = 0.05: TPR - FPR at every threshold is the difference of
   the two CDFs, so with 95% probability no threshold's observed advantage
   exceeds its true one by more. Without it a chance attack on 800 targets
   (best advantage about 0.05) would call a correct epsilon 0.1 broken. Any
   broken attack: status ``"broken"``. A non-private model: ``"not
   applicable (non-private)"``; a synthetic table with no claim: ``"not
   applicable (no claimed epsilon)"``.
7. Every random draw comes from child streams of ``numpy.random.SeedSequence(seed)``,
   one per step, so a seed reproduces the audit and one step's draws do not
   depend on another's.
8. Nothing per-row leaves the audit: the report holds the attacks' aggregates,
   utility aggregates, set sizes, the model's public metadata and timings.
   These are exact (not DP) statistics of the private rows: the report is an
   internal record for the privacy officers and never leaves the appliance
   (``report.CONFIDENTIALITY``).
"""

from __future__ import annotations

import math
import secrets as _secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from hgan.audit import utility
from hgan.audit.copies import copy_figures
from hgan.audit.attacks.inference import InferenceEvaluator
from hgan.audit.attacks.linkability import LinkabilityEvaluator
from hgan.audit.attacks.membership import run_membership_attacks
from hgan.audit.attacks.singling_out import MODES, SinglingOutEvaluator
from hgan.audit.attacks.whitebox import run_whitebox_attacks
from hgan.audit.estimates import max_advantage
from hgan.audit.report import FORMAT, AuditReport
from hgan.release.errors import InvalidInput
from hgan.release.model import Model, load_model
from hgan.release.sample import sample
from hgan.release.schema import Schema

INFERENCE_MAX_SECRETS = 5  # rule 4
MIN_HOLDOUT_ROWS = 4  # rule 2: two non-members and two reference rows (one per threshold half each)

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: called before each step (``done`` steps finished) and once at the end."""

_STREAMS = ("split", "sample", "membership", "whitebox", "singling_out.univariate",
            "singling_out.multivariate", "linkability", "inference", "utility")


def audit(*, model_dir: str | Path | None = None, synthetic: pd.DataFrame | None = None,
          train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, seed: int | None = None,
          claimed_epsilon: float | None = None, claimed_delta: float = 0.0,
          progress: Progress | None = None) -> AuditReport:
    """Run the audit of rules 1-8 and return its report."""
    started = time.perf_counter()
    seed = seed if seed is not None else _secrets.randbits(63)
    streams = dict(zip(_STREAMS, np.random.SeedSequence(seed).spawn(len(_STREAMS))))
    rng = {name: np.random.default_rng(s) for name, s in streams.items()}

    # rule 1
    if (model_dir is None) == (synthetic is None):
        raise InvalidInput("audit.inputs", "give exactly one of a model directory and --synthetic",
                           hint="hgan audit MODEL_DIR ... or hgan audit --synthetic synthetic.csv ...")
    model = load_model(model_dir) if model_dir is not None else None
    if model is not None:
        _check_model_schema(model, schema, model_dir)
        if claimed_epsilon is not None:
            raise InvalidInput("audit.inputs", "a model's epsilon comes from its metadata; "
                               "--claimed-epsilon is for --synthetic audits only",
                               hint="drop --claimed-epsilon")
    if claimed_epsilon is not None and not (claimed_epsilon >= 0 and 0.0 <= claimed_delta <= 1.0):
        raise InvalidInput("audit.inputs", "--claimed-epsilon must be >= 0 and --claimed-delta in [0, 1]",
                           hint="e.g. --claimed-epsilon 1 --claimed-delta 1e-5")
    if len(holdout) < MIN_HOLDOUT_ROWS or len(train) < 2:
        raise InvalidInput("audit.inputs", f"the audit needs at least 2 training rows and {MIN_HOLDOUT_ROWS} "
                           "holdout rows (half non-members, half reference)",
                           hint="hold out about 20% of the table before training")

    source, claim = _source(model, claimed_epsilon, claimed_delta)
    delta = claim["delta"] if claim["delta"] is not None else 0.0

    steps = (["sample"] if model is not None else []) + ["membership"] + (["whitebox"] if model else []) + \
        [f"singling_out.{m}" for m in MODES] + ["linkability", "inference", "copies", "utility"]
    timings: dict[str, float] = {}
    state = {"done": 0}

    def step(name: str) -> _Timer:
        if progress is not None:
            progress(name, state["done"], len(steps))
        state["done"] += 1
        return _Timer(timings, name)

    # rule 2
    order = rng["split"].permutation(len(holdout))
    half = len(holdout) // 2
    non_members = holdout.iloc[np.sort(order[:half])].reset_index(drop=True)
    reference = holdout.iloc[np.sort(order[half:2 * half])].reset_index(drop=True)
    members = train.reset_index(drop=True)
    control = pd.concat([non_members, reference], ignore_index=True)

    # rule 3
    if model is not None:
        with step("sample"):
            synthetic = sample(model, len(members), seed=int(rng["sample"].integers(2**62)))
    assert synthetic is not None
    synthetic = synthetic.reset_index(drop=True)

    # rule 4
    with step("membership"):
        attacks = [a.to_dict() for a in run_membership_attacks(synthetic, members, non_members, reference, schema,
                                                               rng["membership"], delta=delta)]
    if model is not None:
        with step("whitebox"):
            attacks += [a.to_dict() for a in run_whitebox_attacks(model, members, non_members, reference, schema,
                                                                  rng["whitebox"], delta=delta)]
    risks: list[dict[str, Any]] = []
    for mode in MODES:
        with step(f"singling_out.{mode}"):
            risks.append(_risk_or_skip(f"risk.singling_out.{mode}", lambda: SinglingOutEvaluator(
                synthetic, members, control, schema, rng[f"singling_out.{mode}"], mode=mode).evaluate()))
    with step("linkability"):
        risks.append(_risk_or_skip("risk.linkability", lambda: LinkabilityEvaluator(
            synthetic, members, control, schema, rng["linkability"]).evaluate()))
    with step("inference"):
        secrets_ = _inference_secrets(schema)
        risks += [r.to_dict() for r in InferenceEvaluator(synthetic, members, control, schema,
                                                            rng["inference"], secrets=secrets_).evaluate()]

    # rule 5
    with step("copies"):
        copies = copy_figures(synthetic, members, non_members, schema)
    with step("utility"):
        utility_figures = _utility(synthetic, members, holdout, schema, int(rng["utility"].integers(2**31)))

    # rule 6
    dp = _dp_consistency(attacks, claim)
    if progress is not None:
        progress("done", len(steps), len(steps))
    timings["total"] = time.perf_counter() - started
    data = {
        "members": len(members), "non_members": len(non_members), "reference": len(reference),
        "synthetic": len(synthetic), "holdout_unused": len(holdout) - 2 * half,
        "split": ("members: every training row; the holdout, shuffled with the audit's seed, cut in two equal "
                  "halves: non-members (attack targets never used in training) and reference (the attacker's "
                  "population data, used by the calibrated attacks); both halves are the risks' control rows"),
        "sizes_note": ("exact counts of the private tables (the training rows among them): like every figure "
                       "of this report they are not DP releases, so the report stays inside the appliance"),
    }
    notes = []
    if model is not None:
        notes.append("white-box attacks ran without a reference generator: the calibrated attack compares each "
                     "target with the reconstruction of its nearest reference rows (population baseline)")
        notes.append(f"synthetic rows: {len(synthetic)} sampled from the model with the audit's seed")
    else:
        notes.append("black-box audit of a synthetic table: no white-box attack ran")
    return AuditReport(
        format=FORMAT, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), seed=seed,
        source=_json_safe(source), verdict_inputs=_json_safe(claim), data=data,
        attacks=tuple(_json_safe(a) for a in attacks), risks=tuple(_json_safe(r) for r in risks),
        copies=_json_safe(copies), utility=_json_safe(utility_figures), dp_consistency=dp,
        timings={k: round(v, 3) for k, v in timings.items()}, notes=tuple(notes))


# -- inputs (rule 1) ------------------------------------------------------------------

def _check_model_schema(model: Model, schema: Schema, model_dir: str | Path) -> None:
    if [c for c in model.schema.modelled] != [c for c in schema.modelled]:
        raise InvalidInput("audit.inputs", f"{model_dir}: the model's modelled columns differ from the schema's",
                           hint="audit with the schema the model was trained with")


def _source(model: Model | None, claimed_epsilon: float | None,
            claimed_delta: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the report's ``source``, its ``verdict_inputs``)."""
    if model is None:
        claim = {"epsilon": claimed_epsilon, "delta": claimed_delta if claimed_epsilon is not None else None,
                 "private": claimed_epsilon is not None, "engine": None}
        return {"kind": "synthetic", "claimed_epsilon": claimed_epsilon,
                "claimed_delta": claim["delta"]}, claim
    privacy, meta = model.privacy, model.metadata
    claim = {"epsilon": privacy.get("epsilon"), "delta": privacy.get("delta"),
             "private": bool(privacy.get("private")), "engine": meta.get("engine")}
    return {"kind": "model", "engine": meta.get("engine"), "private": claim["private"],
            "epsilon": claim["epsilon"], "delta": claim["delta"],
            "weights_sha256": meta.get("weights_sha256")}, claim


def _inference_secrets(schema: Schema) -> list[str]:
    """Rule 4: the target first, then the first modelled columns; at most ``INFERENCE_MAX_SECRETS``."""
    names = [c.name for c in schema.modelled]
    first = [schema.target.name] if schema.target is not None else []
    return (first + [n for n in names if n not in first])[:INFERENCE_MAX_SECRETS]


def _risk_or_skip(attack_id: str, run: Callable[[], Any]) -> dict[str, Any]:
    """An attack that cannot run on these rows (e.g. no predicate singles out a row) is a result, not silence."""
    try:
        return run().to_dict()
    except ValueError as exc:
        return {"attack_id": attack_id, "skipped": str(exc)}


# -- utility (rule 5) -----------------------------------------------------------------

def _utility(synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema,
             seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"marginals": utility.marginals(train, synthetic, schema)}
    if schema.target is not None:
        out["tstr"] = utility.tstr(synthetic, train, holdout, schema, seed=seed)
    else:
        out["tstr"] = None
    out["fidelity"] = utility.column_fidelity(train, synthetic, schema)
    out["tvd_1way"] = utility.tvd(synthetic, holdout, schema, order=1)
    out["tvd_2way"] = utility.tvd(synthetic, holdout, schema, order=2) if len(schema.modelled) >= 2 else None
    out["association"] = utility.association_difference(train, synthetic, schema)
    try:
        out["detection_auc"] = utility.detection_auc(synthetic, holdout, schema, seed=seed)
    except ValueError as exc:
        out["detection_auc"] = None
        out["detection_skipped"] = str(exc)
    out["per_class"] = utility.per_class(synthetic, train, holdout, schema, seed=seed)
    return out


# -- DP consistency (rule 6) ----------------------------------------------------------

def best_advantage(attack: dict[str, Any]) -> float:
    """Max over the attack's ROC grid of TPR - FPR."""
    roc = attack["roc"]
    return float(max(t - f for f, t in zip(roc["fpr"], roc["tpr"])))


ADVANTAGE_ALPHA = 0.05  # rule 6


def advantage_slack(n_members: int, n_non_members: int, alpha: float = ADVANTAGE_ALPHA) -> float:
    """Rule 6: how far sampling alone can lift an observed TPR - FPR, with probability 1 - alpha (DKW)."""
    return sum(math.sqrt(math.log(4 / alpha) / (2 * n)) for n in (n_members, n_non_members))


def _dp_consistency(attacks: list[dict[str, Any]], claim: dict[str, Any]) -> dict[str, Any]:
    if not claim["private"]:
        status = ("not applicable (non-private)" if claim["engine"] is not None
                  else "not applicable (no claimed epsilon)")
        return {"status": status, "broken_attacks": [], "epsilon": None, "delta": None, "max_advantage": None}
    epsilon, delta = float(claim["epsilon"]), float(claim["delta"] or 0.0)
    allowed = max_advantage(epsilon, delta)
    broken = []
    for a in attacks:
        low = a["empirical_epsilon"]["low"]
        low = math.inf if low is None else float(low)  # rule 1 of estimates: null is an unbounded end
        advantage = best_advantage(a)
        slack = advantage_slack(a["n_members"], a["n_non_members"])
        reasons = []
        if low > epsilon:
            reasons.append(f"empirical epsilon lower bound {low:.3g} > claimed {epsilon:g}")
        if advantage - slack > allowed:
            reasons.append(f"advantage {advantage:.3f} (at least {advantage - slack:.3f} with 95% confidence) "
                           f"> {allowed:.3f} allowed at (epsilon {epsilon:g}, delta {delta:g})")
        if reasons:
            broken.append({"attack_id": a["attack_id"], "reasons": reasons})
    return {"status": "broken" if broken else "consistent", "broken_attacks": broken, "epsilon": epsilon,
            "delta": delta, "max_advantage": allowed}


# -- helpers --------------------------------------------------------------------------

class _Timer:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self._timings, self._name = timings, name

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._timings[self._name] = time.perf_counter() - self._start


def _json_safe(obj: Any) -> Any:
    """Plain JSON values: NaN and infinities become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
