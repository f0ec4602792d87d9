"""The model directory: what a trained generator is, on disk.

A model directory holds exactly two files:
    generator.safetensors   weights only (no pickle, invariant 5)
    generator.json          format, engine, schema, codec parameters,
                            architecture, the DP class prior, the privacy
                            figures and the versions

Rules for loading (``load_model``), checked in this order:
1. The directory exists and holds exactly the two files, nothing else.
2. ``generator.json`` is at most ``MAX_JSON_BYTES``, is JSON, has the format
   ``FORMAT`` and exactly the expected top-level fields.
3. The schema, codec parameters, architecture, class prior and privacy block
   are valid; the codec parameters are this version's (its format and bin
   counts; fine columns that the schema bins), and the architecture agrees
   with the layout that the schema and the codec parameters imply.
4. The weights file's SHA-256 equals the one recorded in the JSON.
5. The weights hold exactly the tensors the architecture declares, with the
   declared shapes and dtype float32. Loading runs no code.

Rules for writing (``write_model``):
6. Nothing in the directory is a count of the training data: the class prior
   and every privacy figure are released through the ledger (DP) or the model
   is marked non-private.
7. The directory appears whole or not at all: files are written and fsynced
   in a temporary sibling which is then renamed into place. An existing
   non-empty output directory is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from hgan.release.atomic import check_new_directory, write_directory
from hgan.release.codec import FIXED_PARAMETERS, Codec
from hgan.release.errors import InvalidInput
from hgan.release.generator import Generator, GeneratorConfig
from hgan.release.schema import Schema

FORMAT = "hgan-generator/1"
WEIGHTS = "generator.safetensors"
METADATA = "generator.json"
MAX_JSON_BYTES = 10_000_000
MAX_WEIGHTS_BYTES = 2_000_000_000
TOP_FIELDS = {"format", "engine", "schema", "codec", "architecture", "class_prior", "privacy",
              "training", "versions", "weights_sha256"}
PRIVACY_FIELDS = {"private", "epsilon", "delta", "accountant", "events", "seeded"}


@dataclass(frozen=True)
class Model:
    """A loaded generator with everything needed to sample from it."""

    schema: Schema
    codec: Codec
    generator: Generator
    class_prior: tuple[float, ...]
    privacy: dict[str, Any]
    metadata: dict[str, Any]


def write_model(out: str | Path, *, generator: Generator, codec: Codec, class_prior: list[float],
                privacy: dict[str, Any], engine: str, training: dict[str, Any],
                versions: dict[str, str]) -> Path:
    """Write a model directory atomically (rules 6-7); return its path. ``codec``: the one
    the generator was trained with (its schema and parameters are written)."""
    out = Path(out)
    check_new_directory(out, what="models")
    weights = save_safetensors({k: v.detach().to("cpu", torch.float32).contiguous()
                                for k, v in generator.state_dict().items()})
    meta = {
        "format": FORMAT, "engine": engine, "schema": codec.schema.to_dict(), "codec": codec.parameters,
        "architecture": generator.config.to_dict(), "class_prior": list(class_prior),
        "privacy": privacy, "training": training, "versions": versions,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    _check_metadata(meta, source=str(out / METADATA))  # never write what we could not load
    metadata = (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode()
    return write_directory(out, {WEIGHTS: weights, METADATA: metadata}, what="models")


def load_model(path: str | Path) -> Model:
    """Load and check a model directory (rules 1-5); raise InvalidInput otherwise."""
    d = Path(path)
    if not d.is_dir():
        _unreadable(d, "is not a model directory", "pass the --out directory of `hgan train`")
    present = sorted(p.name for p in d.iterdir())
    if present != sorted([METADATA, WEIGHTS]):
        extra = sorted(set(present) - {METADATA, WEIGHTS})
        missing = sorted({METADATA, WEIGHTS} - set(present))
        _unreadable(d, f"must hold exactly {METADATA} and {WEIGHTS} "
                       f"(missing: {missing or 'none'}, unexpected: {extra or 'none'})",
                    "use the directory exactly as `hgan train` wrote it")
    meta = _read_json(d / METADATA)
    _check_metadata(meta, source=str(d / METADATA))
    schema = Schema.from_dict(meta["schema"], source=f"{d / METADATA}: schema")
    try:
        codec = Codec(schema, fine_columns=tuple(meta["codec"]["fine_columns"]))
    except ValueError as exc:
        _invalid(d / METADATA, f'field "codec": {exc}')
    config = GeneratorConfig.from_dict(meta["architecture"])
    _check_matches_codec(d / METADATA, config, codec, meta["class_prior"])
    weights = _read_capped(d / WEIGHTS, MAX_WEIGHTS_BYTES)
    if hashlib.sha256(weights).hexdigest() != meta["weights_sha256"]:
        _invalid(d / WEIGHTS, "does not match the SHA-256 recorded in generator.json")
    generator = Generator(config)
    generator.load_state_dict(_checked_tensors(d / WEIGHTS, weights, generator))
    try:
        generator.check_offset_table()
    except ValueError as exc:
        _invalid(d / WEIGHTS, str(exc))
    generator.eval()
    return Model(schema, codec, generator, tuple(meta["class_prior"]), meta["privacy"], meta)


# -- checks ------------------------------------------------------------------

def _check_metadata(meta: Any, *, source: str) -> None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        _invalid(source, f'is not an H-GAN model (field "format" must be "{FORMAT}")')
    if set(meta) != TOP_FIELDS:
        _invalid(source, f"has fields {sorted(meta)}; expected exactly {sorted(TOP_FIELDS)}")
    if not isinstance(meta["engine"], str):
        _invalid(source, 'field "engine" must be a string')
    _check_codec(meta["codec"], source)
    for key in ("training", "versions"):
        if not isinstance(meta[key], dict):
            _invalid(source, f'field "{key}" must be an object')
    sha = meta["weights_sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        _invalid(source, 'field "weights_sha256" must be a lowercase hex SHA-256')
    prior = meta["class_prior"]
    if (not isinstance(prior, list) or not prior
            or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in prior)
            or not math.isclose(sum(prior), 1.0, abs_tol=1e-6)):
        _invalid(source, 'field "class_prior" must be probabilities that sum to 1')
    _check_privacy(meta["privacy"], source)
    try:
        GeneratorConfig.from_dict(meta["architecture"])
    except ValueError as exc:
        _invalid(source, str(exc))


def _check_codec(parameters: Any, source: str) -> None:
    fixed = FIXED_PARAMETERS
    if (not isinstance(parameters, dict) or set(parameters) != {*fixed, "fine_columns"}
            or any(parameters[k] != v or isinstance(parameters[k], bool) for k, v in fixed.items())
            or not isinstance(parameters["fine_columns"], list)
            or not all(isinstance(name, str) for name in parameters["fine_columns"])):
        _invalid(source, f'field "codec" is {parameters!r}; this version decodes {fixed!r} '
                         'and a list of "fine_columns" (column names)')


def _check_privacy(privacy: Any, source: str) -> None:
    if not isinstance(privacy, dict) or set(privacy) != PRIVACY_FIELDS:
        _invalid(source, f'field "privacy" must have exactly the fields {sorted(PRIVACY_FIELDS)}')
    if not isinstance(privacy["private"], bool) or not isinstance(privacy["events"], list):
        _invalid(source, 'privacy.private must be true/false and privacy.events a list')
    if privacy["private"]:
        eps, delta = privacy["epsilon"], privacy["delta"]
        if not (isinstance(eps, (int, float)) and eps > 0 and isinstance(delta, (int, float)) and 0 < delta < 1):
            _invalid(source, "a private model needs privacy.epsilon > 0 and 0 < privacy.delta < 1")
        if not privacy["events"]:
            _invalid(source, "a private model must list its privacy events")
    elif privacy["epsilon"] is not None:
        _invalid(source, "a non-private model must have privacy.epsilon = null")


def _check_matches_codec(source: Path, config: GeneratorConfig, codec: Codec, prior: list) -> None:
    if (list(config.head_sizes) != codec.head_sizes or config.n_offsets != codec.n_offsets
            or config.n_classes != codec.n_classes or len(prior) != codec.n_classes
            or (config.offsets == "table" and list(config.offset_heads) != codec.offset_heads)):
        _invalid(source, "the architecture does not match the layout its schema implies")


def _checked_tensors(source: Path, blob: bytes, generator: Generator) -> dict[str, torch.Tensor]:
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InvalidInput("model.invalid", f"{source}: not a valid safetensors file ({exc})",
                           hint="the file is damaged; use the directory exactly as `hgan train` wrote it") from exc
    expected = {k: v.shape for k, v in generator.state_dict().items()}
    if set(tensors) != set(expected):
        _invalid(source, f"holds tensors {sorted(tensors)}; expected {sorted(expected)}")
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float32 or tensor.shape != expected[name]:
            _invalid(source, f"tensor {name!r} has shape {tuple(tensor.shape)} {tensor.dtype}; "
                             f"expected {tuple(expected[name])} float32")
        if not torch.isfinite(tensor).all():
            _invalid(source, f"tensor {name!r} holds non-finite values")
    return tensors


# -- file helpers ----------------------------------------------------------------

def _read_capped(path: Path, cap: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except OSError as exc:
        _unreadable(path, f"cannot be read ({exc.strerror})", "check the path and permissions")
    if len(data) > cap:
        _unreadable(path, f"is larger than {cap} bytes", "this is not a file written by `hgan train`")
    return data


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_capped(path, MAX_JSON_BYTES), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        _invalid(path, f"is not valid JSON ({exc})")


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _unreadable(path: Path | str, what: str, hint: str) -> None:
    raise InvalidInput("model.unreadable", f"{path}: {what}", hint=hint)


def _invalid(path: Path | str, what: str) -> None:
    raise InvalidInput("model.invalid", f"{path}: {what}",
                       hint="the model is damaged or not from this version; retrain or ask its publisher")
