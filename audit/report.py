"""The audit report: one frozen record, written as versioned JSON and as one self-contained HTML page.

Rules:
1. ``AuditReport.from_dict`` refuses anything but a complete ``FORMAT`` report
   (``InvalidInput("audit.report")`` naming the field); ``to_dict`` writes
   plain JSON values, and ``from_dict(to_dict(r)) == r``.
2. The report holds aggregates only: attack counts, rates and ROC grids, risk
   estimates, utility aggregates, set sizes, the model's public metadata and
   timings. No row, score, distance or value of a row. The aggregates are
   exact, not DP releases: the report is confidential to the appliance and its
   officers (``CONFIDENTIALITY``, shown at the top of the page); a release
   carries none of its figures unless a later step releases them with DP.
3. ``render_html`` writes one page with no external asset and no script: inline
   CSS and SVG. Every figure has a one-line explanation; field explanations
   come from the ``Fields`` list below (``FIELD_DOCS``).
4. ``write_report`` writes ``report.json`` and ``report.html`` into a new
   directory atomically (``release/atomic.py``); an existing non-empty
   directory is ``InvalidInput("output.exists")``.

Fields (one line each, reused by the HTML as explanations):
    format          the version of this report's layout ("hgan-audit/1")
    created         when the audit ran (UTC, ISO 8601)
    seed            the seed of every random draw of the audit; the same seed and inputs reproduce it
    source          what was audited: a model (engine, privacy claim, weights SHA-256) or a synthetic table
    verdict_inputs  the privacy claim the checks compare against: epsilon, delta, private, engine
    data            how many rows each role of the attacks used (members, non-members, reference, synthetic)
    attacks         membership attacks: AUC, TPR at low FPR, ROC curve and a 95% lower bound on epsilon
    risks           Anonymeter risks (singling out, linkability, inference): excess success on training rows over control rows
    copies          exact copies of real rows among the synthetic ones, and distances to the closest synthetic row (informative, not a guarantee)
    utility         how useful the synthetic rows are: TSTR, marginals, total variation and detection AUC
    dp_consistency  whether any attack beats what the claimed (epsilon, delta) allows ("broken" fails the candidate)
    timings         seconds spent in each step of the audit
    notes           how the audit was run, in plain language
"""

from __future__ import annotations

import copy
import html
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hgan.release.atomic import check_new_directory, write_directory
from hgan.release.errors import InvalidInput

FORMAT = "hgan-audit/1"
CONFIDENTIALITY = ("Confidential: for the privacy officers of this appliance. The figures below are exact "
                   "aggregates of the private rows (not differentially private): do not copy this report out of "
                   "the appliance or attach it to a release.")
JSON_NAME, HTML_NAME = "report.json", "report.html"


def _field_docs() -> dict[str, str]:
    lines = __doc__.split("Fields (")[1].splitlines()[1:]
    docs = {}
    for line in lines:
        if not line.strip():
            break
        name, text = line.strip().split(None, 1)
        docs[name] = text
    return docs


FIELD_DOCS: dict[str, str] = _field_docs()


@dataclass(frozen=True)
class AuditReport:
    """The result of ``audit.run.audit``; see the module docstring for each field."""

    format: str
    created: str
    seed: int
    source: dict[str, Any]
    verdict_inputs: dict[str, Any]
    data: dict[str, Any]
    attacks: tuple[dict[str, Any], ...]
    risks: tuple[dict[str, Any], ...]
    copies: dict[str, Any]
    utility: dict[str, Any]
    dp_consistency: dict[str, Any]
    timings: dict[str, float]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        out["attacks"], out["risks"], out["notes"] = list(out["attacks"]), list(out["risks"]), list(out["notes"])
        return out

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<report>") -> AuditReport:
        """Rule 1: a complete report of this format, or ``InvalidInput("audit.report")``."""
        if not isinstance(raw, dict):
            _bad(source, "is not a JSON object")
        if raw.get("format") != FORMAT:
            _bad(source, f"format must be {FORMAT!r}")
        names = {f.name for f in fields(cls)}
        if set(raw) != names:
            _bad(source, f"fields differ (missing: {sorted(names - set(raw)) or 'none'}; "
                         f"unexpected: {sorted(set(raw) - names) or 'none'})")
        types = {"created": str, "seed": int, "source": dict, "verdict_inputs": dict, "data": dict,
                 "attacks": list, "risks": list, "copies": dict, "utility": dict, "dp_consistency": dict,
                 "timings": dict, "notes": list}
        for name, kind in types.items():
            if not isinstance(raw[name], kind):
                _bad(source, f"field {name!r} must be a {kind.__name__}")
        if not {"status", "broken_attacks"} <= set(raw["dp_consistency"]):
            _bad(source, "dp_consistency needs status and broken_attacks")
        for a in raw["attacks"]:
            if not isinstance(a, dict) or not {"attack_id", "auc", "roc", "empirical_epsilon"} <= set(a):
                _bad(source, "every attack needs attack_id, auc, roc and empirical_epsilon")
        raw = copy.deepcopy(raw)
        return cls(**{**raw, "attacks": tuple(raw["attacks"]), "risks": tuple(raw["risks"]),
                      "notes": tuple(raw["notes"])})

    @property
    def broken(self) -> bool:
        return self.dp_consistency["status"] == "broken"

    def summary(self) -> dict[str, Any]:
        """What ``hgan audit --json`` prints: the verdict figures, no ROC grids."""
        worst = max(self.attacks, key=lambda a: a["auc"]) if self.attacks else None
        eps_lows = [a["empirical_epsilon"]["low"] for a in self.attacks]
        tstr = self.utility.get("tstr") or {}
        return {
            "format": self.format, "created": self.created, "seed": self.seed, "source": self.source,
            "dp_consistency": self.dp_consistency,
            "worst_attack": None if worst is None else {"attack_id": worst["attack_id"], "auc": worst["auc"]},
            "max_epsilon_lower_bound": (None if any(x is None for x in eps_lows) and eps_lows
                                        else max(eps_lows, default=None)),
            "attacks": [{"attack_id": a["attack_id"], "auc": a["auc"], "tpr_at_fpr": a["tpr_at_fpr"],
                         "epsilon_low": a["empirical_epsilon"]["low"]} for a in self.attacks],
            "risks": [{"attack_id": r["attack_id"], **({"risk": r["risk"]} if "risk" in r
                                                       else {"skipped": r.get("skipped")})}
                      for r in self.risks],
            "tstr_ratio": tstr.get("ratio"), "tstr_ratio_interval": tstr.get("ratio_interval"),
            "exact_copies": {k: v for k, v in self.copies.get("exact", {}).items() if not k.startswith("n_")},
            "detection_auc": self.utility.get("detection_auc"), "tvd_2way": self.utility.get("tvd_2way"),
            "association_mean_abs_difference": (self.utility.get("association") or {}).get("mean_abs_difference"),
            "data": {k: v for k, v in self.data.items() if isinstance(v, int)},
            "seconds": self.timings.get("total"),
        }


def _bad(source: str, what: str) -> None:
    raise InvalidInput("audit.report", f"{source}: {what}", hint=f"pass a report.json written by `hgan audit` "
                                                                 f"({FORMAT})")


# -- writing (rule 4) -----------------------------------------------------------------

def write_report(report: AuditReport, out: str | Path) -> Path:
    """Write ``report.json`` and ``report.html`` into the new directory ``out``; return it."""
    files = {JSON_NAME: (json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n").encode(),
             HTML_NAME: render_html(report).encode()}
    return write_directory(out, files, what="reports")


def check_output(out: str | Path) -> None:
    """Refuse an existing path that is not an empty directory (``output.exists``)."""
    check_new_directory(out, what="reports")


# -- HTML (rule 3) --------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.broken{color:#b00;font-weight:bold}.warn{background:#fff3cd;padding:.4em}.ok{color:#070;font-weight:bold}.expl{color:#555;font-style:italic}
figure{display:inline-block;margin:.5em}.plots{display:flex;flex-wrap:wrap}.plots figure{width:270px}svg text{font-size:10px}"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "unbounded"
    return f"{x:.{digits}f}" if isinstance(x, float) else _e(x)


def _interval(bounds: list[float] | None) -> str:
    return "not available" if bounds is None else f"[{_num(bounds[0])}, {_num(bounds[1])}]"


def _ci(est: dict[str, Any]) -> str:
    return f"{_num(est['value'])} [{_num(est['low'])}, {_num(est['high'])}]"


def render_html(report: AuditReport) -> str:
    """One self-contained page (rule 3)."""
    d = report.to_dict()
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>H-GAN audit report</title>"
             f"<style>{_CSS}</style></head><body><h1>H-GAN audit report</h1>",
             f"<p class='warn'>{_e(CONFIDENTIALITY)}</p>",
             f"<p class='expl'>{_e(FIELD_DOCS['created'])}: {_e(d['created'])}; "
             f"{_e(FIELD_DOCS['format'])}: {_e(d['format'])}</p>"]
    parts.append(_summary_html(report))
    parts.append(_section("attacks", "Membership attacks"))
    parts.append("<p class='expl'>Each curve: how many training rows an attacker flags (true positives) against "
                 "how many never-seen rows it wrongly flags (false positives); the diagonal is guessing.</p>")
    parts.append("<div class='plots'>" + "".join(_roc_svg(a) for a in d["attacks"]) + "</div>")
    parts.append(_table(["attack", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR", "epsilon lower bound (95%)", "notes"],
                        [[a["attack_id"], _num(a["auc"]), _num(a["tpr_at_fpr"].get("0.01")),
                          _num(a["tpr_at_fpr"].get("0.001")), _num(a["empirical_epsilon"]["low"]), a["notes"]]
                         for a in d["attacks"]]))
    parts.append(_section("risks", "Re-identification risks"))
    parts.append(_table(["attack", "risk [95% CI]", "notes"],
                        [[r["attack_id"], _ci(r["risk"]) if "risk" in r else "skipped",
                          r.get("notes", r.get("skipped", ""))] for r in d["risks"]]))
    parts.append(_section("copies", "Copies of real rows"))
    parts.append(_copies_html(d["copies"]))
    parts.append(_section("utility", "Utility"))
    parts.append(_utility_html(d["utility"]))
    parts.append(_section("data", "Rows used"))
    parts.append(_table(["field", "value"], [[k, v] for k, v in d["data"].items()]))
    parts.append(_section("source", "What was audited"))
    parts.append(_table(["field", "value"], [[k, v] for k, v in d["source"].items()]))
    parts.append(_section("verdict_inputs", "Privacy claim checked"))
    parts.append(_table(["field", "value"], [[k, v] for k, v in d["verdict_inputs"].items()]))
    parts.append(_section("timings", "Timings"))
    parts.append(_table(["step", "seconds"], [[k, v] for k, v in d["timings"].items()]))
    parts.append(_section("notes", "Notes"))
    parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in d["notes"]) + "</ul>")
    parts.append(f"<p class='expl'>{_e(FIELD_DOCS['seed'])}: {_e(d['seed'])}</p></body></html>")
    return "\n".join(parts)


def _section(field: str, title: str) -> str:
    return f"<h2>{_e(title)}</h2><p class='expl'>{_e(FIELD_DOCS[field])}.</p>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_html(report: AuditReport) -> str:
    s, dp = report.summary(), report.dp_consistency
    cls = "broken" if report.broken else "ok"
    rows = [["DP consistency", f"<span class='{cls}'>{_e(dp['status'])}</span>"]]
    for b in dp["broken_attacks"]:
        rows.append([f"broken: {_e(b['attack_id'])}", _e("; ".join(b["reasons"]))])
    if s["worst_attack"]:
        rows.append(["worst membership attack (AUC)", f"{_e(s['worst_attack']['attack_id'])}: "
                                                        f"{_num(s['worst_attack']['auc'])}"])
    rows.append(["largest epsilon lower bound (95%)", _num(s["max_epsilon_lower_bound"])])
    for r in report.risks:
        rows.append([_e(r["attack_id"]), _ci(r["risk"]) if "risk" in r else "skipped"])
    rows.append(["TSTR ratio (synthetic-trained AUROC / real-trained AUROC) [95% over holdout resamples]",
                 f"{_num(s['tstr_ratio'])} {_interval(s['tstr_ratio_interval'])}"])
    body = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in rows)
    return (f"<h2>Summary</h2><p class='expl'>{_e(FIELD_DOCS['dp_consistency'])}; AUC 0.5 means an attacker "
            f"does no better than a coin; risks are shares of training rows exposed beyond control rows.</p>"
            f"<table>{body}</table>")


_W, _H, _PAD = 260, 260, 30


def _roc_svg(attack: dict[str, Any]) -> str:
    fpr, tpr = attack["roc"]["fpr"], attack["roc"]["tpr"]
    span = _W - 2 * _PAD

    def xy(f: float, t: float) -> str:
        return f"{_PAD + f * span:.1f},{_H - _PAD - t * span:.1f}"

    points = " ".join(xy(f, t) for f, t in zip([0.0, *fpr], [0.0, *tpr]))  # every ROC curve starts at (0, 0)
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{_W}' height='{_H}' role='img' "
            f"aria-label='ROC curve of {_e(attack['attack_id'])}'>"
            f"<rect x='{_PAD}' y='{_PAD}' width='{span}' height='{span}' fill='none' stroke='#999'/>"
            f"<line x1='{_PAD}' y1='{_H - _PAD}' x2='{_W - _PAD}' y2='{_PAD}' stroke='#bbb' stroke-dasharray='4'/>"
            f"<polyline points='{points}' fill='none' stroke='#c33' stroke-width='2'/>"
            f"<text x='{_PAD}' y='{_H - _PAD + 12}' text-anchor='middle'>0</text>"
            f"<text x='{_W - _PAD}' y='{_H - _PAD + 12}' text-anchor='middle'>1</text>"
            f"<text x='{_PAD - 4}' y='{_PAD + 4}' text-anchor='end'>1</text>"
            f"<text x='{_W / 2}' y='{_H - 8}' text-anchor='middle'>false positive rate</text>"
            f"<text x='10' y='{_H / 2}' transform='rotate(-90 10 {_H / 2})' text-anchor='middle'>true positive rate"
            f"</text><text x='{_W / 2}' y='18' text-anchor='middle'>{_e(attack['attack_id'])} "
            f"(AUC {_num(attack['auc'])})</text></svg>"
            f"<figcaption class='expl'>A curve far above the dashed diagonal means the attacker tells training "
            f"rows apart.</figcaption></figure>")


def _utility_html(u: dict[str, Any]) -> str:
    parts = []
    tstr = u.get("tstr")
    if tstr:
        parts.append("<p class='expl'>TSTR: a classifier trained on synthetic rows, scored on real holdout rows, "
                     "against the same classifier trained on real rows (ratio 1 = as useful as the real data).</p>")
        parts.append(_table(["figure", "value"], [[k, _interval(v) if isinstance(v, list) else _num(v)]
                                                  for k, v in tstr.items()]))
        parts.append("<p class='expl'>Intervals: 95% over resamples of the holdout rows, so how much the figure "
                     "moves with the rows it is scored on alone; on a small table they are wide.</p>")
    extra = [[k, _num(u[k])] for k in ("tvd_1way", "tvd_2way", "detection_auc") if k in u]
    if extra:
        parts.append("<p class='expl'>Total variation: 0 means identical one- or two-way distributions; "
                     "detection AUC 0.5 means a classifier cannot tell synthetic from real rows.</p>")
        parts.append(_table(["figure", "value"], extra))
    parts.append(_marginals_svg(u.get("marginals", [])))
    if u.get("fidelity"):
        parts.append("<p class='expl'>Per column: distance between the real (training) and synthetic distributions "
                     "of its values, total variation for categories, Kolmogorov-Smirnov for numbers (0 = identical, "
                     "1 = disjoint), and the share of missing values on each side.</p>")
        parts.append(_table(["column", "statistic", "distance", "missing (real)", "missing (synthetic)"],
                            [[r["column"], r["statistic"], _num(r["value"]), _num(r["missing_real"]),
                              _num(r["missing_synthetic"])] for r in u["fidelity"]]))
    if u.get("association"):
        parts.append(_association_svg(u["association"]))
    if u.get("per_class"):
        parts.append("<p class='expl'>The same figures within each class of the target (synthetic rows of a class "
                     "against real rows of that class): what a researcher sampling one class gets.</p>")
        keys = ["mean_fidelity_distance", "tvd_1way", "tvd_2way", "association_mean_abs_difference",
                "detection_auc"]
        heads = ["column distance (mean)", "one-way TVD", "two-way TVD", "association difference", "detection AUC"]
        parts.append(_table(["class", "synthetic share", *heads],
                            [[r["class"], _num(r["synthetic_share"]), *(_num(r.get(k)) for k in keys)]
                             for r in u["per_class"]]))
    return "\n".join(parts)


def _copies_html(c: dict[str, Any]) -> str:
    exact = c.get("exact", {})
    rows = [[k.replace("_", " "), _num(v, 4)] for k, v in exact.items() if not k.startswith("n_")]
    parts = ["<p class='expl'>Identical rows (every modelled column equal). Training rows reproduced far more often "
             "than never-seen rows means memorisation; equal rates mean the rows are simply common.</p>",
             _table(["figure", "share"], rows)]
    dcr = c.get("dcr")
    if dcr:
        parts.append(_dcr_svg(dcr))
    return "\n".join(parts)


def _dcr_svg(dcr: dict[str, Any]) -> str:
    """Grouped bars: share of members and of non-members per distance bin."""
    edges = dcr["bin_edges"]
    labels = ["exact"] + [f"<{hi:g}" if lo < 1e-3 else f"{lo:g}-{hi:g}" for lo, hi in zip(edges[1:-2], edges[2:-1])]
    labels.append(f">={edges[-2]:g}")
    w, h, pad, group = 560, 220, 30, 52
    items = []
    for k, label in enumerate(labels):
        x = pad + k * group
        for j, (role, colour) in enumerate((("members", "#7b3294"), ("non_members", "#008837"))):
            v = dcr[role][k] or 0.0
            bar = v * (h - 2 * pad)
            items.append(f"<rect x='{x + j * 20}' y='{h - pad - bar:.1f}' width='18' height='{bar:.1f}' "
                         f"fill='{colour}'/>")
        items.append(f"<text x='{x + 19}' y='{h - pad + 12}' text-anchor='middle'>{_e(label)}</text>")
    legend = ("<rect x='40' y='4' width='10' height='10' fill='#7b3294'/><text x='54' y='13'>training rows</text>"
              "<rect x='160' y='4' width='10' height='10' fill='#008837'/><text x='174' y='13'>never-seen rows</text>")
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
            f"aria-label='distance to the closest synthetic row'>{legend}{''.join(items)}"
            f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#999'/></svg>"
            f"<figcaption class='expl'>Share of training rows (purple) and never-seen rows (green) by distance to their "
            f"closest synthetic row (1 = one category changed, or a number's whole range): purple bars piled at the "
            f"left mean the generator copies its training rows.</figcaption></figure>")


def _association_svg(a: dict[str, Any]) -> str:
    """Heat map of |association(real) - association(synthetic)| for each pair of columns."""
    names, real, syn = a["columns"], a["real"], a["synthetic"]
    d = len(names)
    cell = max(6, min(22, 440 // max(d, 1)))
    label_w = 130
    size = label_w + d * cell + 10
    items = []
    for i in range(d):
        items.append(f"<text x='{label_w - 4}' y='{label_w + i * cell + cell * 0.75:.1f}' text-anchor='end'>"
                     f"{_e(names[i])}</text>")
        items.append(f"<text x='{label_w + i * cell + cell * 0.75:.1f}' y='{label_w - 4}' "
                     f"transform='rotate(-60 {label_w + i * cell + cell * 0.75:.1f} {label_w - 4})'>"
                     f"{_e(names[i])}</text>")
        for j in range(d):
            diff = min(abs((real[i][j] or 0.0) - (syn[i][j] or 0.0)), 1.0)
            shade = int(255 - 200 * min(diff / 0.3, 1.0))  # full colour at a difference of 0.3
            items.append(f"<rect x='{label_w + j * cell}' y='{label_w + i * cell}' width='{cell - 1}' "
                         f"height='{cell - 1}' fill='rgb(255,{shade},{shade})' stroke='#ddd'/>")
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' role='img' "
            f"aria-label='association difference'>{''.join(items)}</svg>"
            f"<figcaption class='expl'>Difference in association between each pair of columns, real (training) vs "
            f"synthetic (Spearman correlation for two numbers, Cramer's V otherwise); white = kept, dark red = a "
            f"difference of 0.3 or more. Mean difference {_num(a.get('mean_abs_difference'))}, largest "
            f"{_num(a.get('max_abs_difference'))}.</figcaption></figure>")


def _marginals_svg(rows: list[dict[str, Any]]) -> str:
    shares = [r for r in rows if r["statistic"] != "mean"]
    if not shares:
        return ""
    bar_h, label_w, plot_w = 14, 260, 400
    height = len(shares) * (2 * bar_h + 6) + 30
    items = []
    for i, r in enumerate(shares):
        y = 20 + i * (2 * bar_h + 6)
        for j, (key, colour) in enumerate((("real", "#36c"), ("synthetic", "#e83"))):
            v = r[key] if r[key] is not None else 0.0
            items.append(f"<rect x='{label_w}' y='{y + j * bar_h}' width='{max(v, 0) * plot_w:.1f}' "
                         f"height='{bar_h - 2}' fill='{colour}'/>")
        items.append(f"<text x='{label_w - 4}' y='{y + bar_h + 3}' text-anchor='end'>"
                     f"{_e(r['column'])}: {_e(r['statistic'])}</text>")
    legend = (f"<rect x='{label_w}' y='2' width='10' height='10' fill='#36c'/><text x='{label_w + 14}' y='11'>"
              f"real (training rows)</text><rect x='{label_w + 140}' y='2' width='10' height='10' fill='#e83'/>"
              f"<text x='{label_w + 154}' y='11'>synthetic</text>")
    means = [r for r in rows if r["statistic"] == "mean"]
    table = _table(["column", "real mean", "synthetic mean"],
                   [[r["column"], _num(r["real"], 2), _num(r["synthetic"], 2)] for r in means]) if means else ""
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{label_w + plot_w + 20}' height='{height}' "
            f"role='img' aria-label='real vs synthetic marginal shares'>{legend}{''.join(items)}</svg>"
            f"<figcaption class='expl'>Share of rows in each category (and missing), real vs synthetic: bars of "
            f"equal length mean the synthetic data keeps that marginal.</figcaption></figure>{table}")
