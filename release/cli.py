"""Researcher commands. Imports nothing from the hospital side (appliance/)."""

from __future__ import annotations

import click

from hgan import console
from hgan.release.errors import InvalidInput
from hgan.release.model import load_model
from hgan.release.sample import sample as draw_rows
from hgan.release.sample import write_table


def _pairs(option: str, text: str | None) -> dict[str, str]:
    """Parse ``a=1,b=2`` into a dict; raise InvalidInput naming the option."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInput("sample.options", f"{option}: {part!r} is not NAME=VALUE",
                               hint=f"e.g. {option} death=1")
        out[key.strip()] = value.strip()
    return out


def _ratio(text: str | None) -> dict[str, float] | None:
    """Parse ``--ratio 0=1,1=2`` into class weights."""
    if not text:
        return None
    try:
        return {k: float(v) for k, v in _pairs("--ratio", text).items()}
    except ValueError as exc:
        raise InvalidInput("sample.options", "--ratio: weights must be numbers",
                           hint="e.g. --ratio 0=1,1=2") from exc


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("-n", "rows", type=int, required=True, help="Number of synthetic rows.")
@click.option("--out", required=True, help="Output file, .csv or .parquet (never overwritten).")
@click.option("--where", default=None, help="Condition on a target class, e.g. death=1.")
@click.option("--ratio", default=None, help="Class proportions, e.g. 0=1,1=1 (balanced).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible samples.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def sample(model_dir: str, rows: int, out: str, where: str | None, ratio: str | None,
           seed: int | None, device: str, as_json: bool) -> None:
    """Sample synthetic patients from MODEL_DIR."""
    if where and ratio:
        raise InvalidInput("sample.options", "--where and --ratio cannot be combined",
                           hint="--where draws one class; --ratio sets proportions")
    model = load_model(model_dir)
    frame = draw_rows(model, rows, where=_pairs("--where", where), ratio=_ratio(ratio), seed=seed,
                      device=device)
    path = write_table(frame, out)
    summary = {"out": str(path), "rows": len(frame), "columns": list(frame.columns),
               "private": model.privacy["private"], "epsilon": model.privacy["epsilon"]}
    target = model.codec.target
    if target is not None:
        counts = frame[target.name].value_counts(sort=False)
        summary["classes"] = {str(k): int(v) for k, v in counts.items()}
    if as_json:
        console.emit_json(summary)
        return
    privacy = (f"epsilon {model.privacy['epsilon']:.3g}, delta {model.privacy['delta']:.1e}"
               if model.privacy["private"] else "NON-PRIVATE model (baseline only)")
    console.table(f"Sampled {len(frame)} rows -> {path}", ["field", "value"],
                  [["model", model_dir], ["privacy", privacy]]
                  + [[f"class {k}", v] for k, v in summary.get("classes", {}).items()])
