"""Model directory: atomic writes and the loading rules of release/model.py, one test each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hgan.release.codec import Codec
from hgan.release.errors import InvalidInput
from hgan.release.generator import Generator, GeneratorConfig
from hgan.release.model import METADATA, WEIGHTS, load_model, write_model
from tests.conftest import mixed_schema

PRIVACY = {"private": True, "epsilon": 1.0, "delta": 1e-6, "accountant": "rdp",
           "events": [{"kind": "gaussian"}], "seeded": True}


def make_generator(schema=None, fine_columns=(), context_dim=0, draw_order=()) -> Generator:
    codec = Codec(schema or mixed_schema(), fine_columns=fine_columns)
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8, (16,), codec.n_classes, tuple(codec.head_sizes), codec.n_offsets,
                                          context_dim=context_dim, draw_order=draw_order))
    if context_dim:
        with torch.no_grad():
            generator.context_logits.normal_()  # they start at zero: make the round trip tell
    return generator


def write(path: Path, **overrides) -> Path:
    args = dict(generator=make_generator(), codec=Codec(mixed_schema()), class_prior=[0.6, 0.4],
                privacy=PRIVACY, engine="test", training={}, versions={"hgan": "test"})
    args.update(overrides)
    return write_model(path, **args)


def test_the_fine_columns_written_are_the_fine_columns_loaded(tmp_path):
    fine = Codec(mixed_schema(), fine_columns=("marker",))
    write(tmp_path / "m", generator=make_generator(fine_columns=("marker",)), codec=fine)
    model = load_model(tmp_path / "m")
    assert model.codec.fine_columns == ("marker",)
    assert model.codec.head_sizes == fine.head_sizes != Codec(mixed_schema()).head_sizes


def test_write_then_load_gives_the_same_weights(tmp_path):
    write(tmp_path / "m")
    model = load_model(tmp_path / "m")
    expected = make_generator().state_dict()
    for name, tensor in model.generator.state_dict().items():
        assert torch.equal(tensor, expected[name])
    assert model.class_prior == (0.6, 0.4)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [METADATA, WEIGHTS]


def test_a_generator_whose_heads_read_earlier_codes_round_trips(tmp_path):
    order = tuple(reversed(range(len(Codec(mixed_schema()).head_sizes))))
    write(tmp_path / "m", generator=make_generator(context_dim=6, draw_order=order))
    model = load_model(tmp_path / "m")
    assert model.generator.config.context_dim == 6 and model.generator.config.draw_order == order
    assert torch.equal(model.generator.earlier, make_generator(context_dim=6, draw_order=order).earlier)
    expected = make_generator(context_dim=6).state_dict()
    assert set(model.generator.state_dict()) == set(expected) >= {"context_logits", "code_embedding.weight"}
    for name, tensor in model.generator.state_dict().items():
        assert torch.equal(tensor, expected[name])


def test_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep").write_text("x")
    with pytest.raises(InvalidInput) as err:
        write(tmp_path / "m")
    assert err.value.code == "output.exists"
    assert (tmp_path / "m" / "keep").read_text() == "x"


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, step):
    """A crash while a file is synced, or at the final rename: no directory, no temporary left."""
    import hgan.release.atomic as atomic

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, step, crash)
    with pytest.raises(OSError):
        write(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_would_not_load_is_never_written(tmp_path):
    with pytest.raises(InvalidInput) as err:
        write(tmp_path / "m", class_prior=[0.7, 0.7])
    assert err.value.code == "model.invalid"
    assert not (tmp_path / "m").exists()


def test_rule1_unexpected_or_missing_files_are_refused(tmp_path):
    write(tmp_path / "m")
    (tmp_path / "m" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.unreadable" and "extra.pkl" in str(err.value)
    (tmp_path / "m" / "extra.pkl").unlink()
    (tmp_path / "m" / WEIGHTS).unlink()
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.unreadable"


def _edit_metadata(path: Path, edit) -> None:
    meta = json.loads((path / METADATA).read_text())
    edit(meta)
    (path / METADATA).write_text(json.dumps(meta))


@pytest.mark.parametrize("edit", [
    lambda m: m.update(format="other/1"),
    lambda m: m.update(extra=1),
    lambda m: m.pop("privacy"),
    lambda m: m["privacy"].update(epsilon=None),
    lambda m: m["privacy"].update(events=[]),
    lambda m: m.update(class_prior=[1.0]),
    lambda m: m["architecture"].update(head_sizes=[3]),
    lambda m: m["architecture"].update(latent_dim=9),
    lambda m: m.update(weights_sha256="0" * 64),
    lambda m: m["codec"].update(numeric_bins=8),
    lambda m: m["codec"].update(fine_columns=["marker"]),  # a binned column, but its heads are coarse
    lambda m: m["codec"].update(fine_columns=["grade"]),   # not a binned column
    lambda m: m["codec"].update(fine_columns="marker"),
    lambda m: m["codec"].update(max_integer_codes=64),
    lambda m: m["codec"].pop("fine_columns"),
    lambda m: m["architecture"].update(context_dim=-1),
    lambda m: m["architecture"].update(context_dim=True),
    lambda m: m["architecture"].update(context_dim=4),   # its weights are not in the file
    lambda m: m["architecture"].pop("context_dim"),
    lambda m: m["architecture"].pop("draw_order"),
    lambda m: m["architecture"].update(draw_order=[0]),  # the heads' order, for context_dim > 0 only
    lambda m: m["architecture"].update(draw_order="0"),
])
def test_rules2_to_4_bad_metadata_is_refused(tmp_path, edit):
    write(tmp_path / "m")
    _edit_metadata(tmp_path / "m", edit)
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code in ("model.invalid", "schema.invalid")


def test_a_draw_order_that_is_not_a_permutation_of_the_heads_is_refused(tmp_path):
    write(tmp_path / "m", generator=make_generator(context_dim=6))
    heads = len(Codec(mixed_schema()).head_sizes)
    _edit_metadata(tmp_path / "m", lambda m: m["architecture"].update(draw_order=[0] * heads))
    with pytest.raises(InvalidInput, match="draw_order"):
        load_model(tmp_path / "m")


def test_rule2_non_json_metadata_is_refused(tmp_path):
    write(tmp_path / "m")
    (tmp_path / "m" / METADATA).write_text('{"format": NaN}')
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.invalid"


def test_rule5_weights_with_wrong_tensors_are_refused(tmp_path):
    write(tmp_path / "m")
    state = make_generator().state_dict()
    state["logits.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "w"))
    blob = (tmp_path / "w").read_bytes()
    (tmp_path / "m" / WEIGHTS).write_bytes(blob)
    import hashlib
    _edit_metadata(tmp_path / "m", lambda m: m.update(weights_sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.invalid" and "logits.weight" in str(err.value)


def test_rule4_flipped_weight_byte_is_refused(tmp_path):
    write(tmp_path / "m")
    blob = bytearray((tmp_path / "m" / WEIGHTS).read_bytes())
    blob[-1] ^= 1
    (tmp_path / "m" / WEIGHTS).write_bytes(bytes(blob))
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.invalid" and "SHA-256" in str(err.value)


def table_generator(table_edit=None) -> Generator:
    """A generator whose offsets come from a within-bin table (generator rule 5)."""
    codec = Codec(mixed_schema())
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8, (16,), codec.n_classes, tuple(codec.head_sizes), codec.n_offsets,
                                          "table", tuple(codec.offset_heads), 4))
    if table_edit:
        table_edit(generator.offset_table)
    return generator


def test_rule5_a_within_bin_table_round_trips(tmp_path):
    def shaped(table):
        table.zero_()
        table[..., 1] = 1.0
    write(tmp_path / "m", generator=table_generator(shaped))
    model = load_model(tmp_path / "m")
    assert model.generator.config.offset_cells == 4
    assert torch.equal(model.generator.offset_table, table_generator(shaped).offset_table)


@pytest.mark.parametrize("edit", [lambda t: t.mul_(2.0), lambda t: t[0, 0].copy_(torch.tensor([1.5, -0.5, 0, 0]))])
def test_rule5_a_within_bin_table_that_is_not_probabilities_is_refused(tmp_path, edit):
    write(tmp_path / "m", generator=table_generator(edit))
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.invalid" and "offset_table" in str(err.value)


@pytest.mark.parametrize("edit", [
    lambda a: a.update(offset_heads=a["offset_heads"][::-1]),
    lambda a: a.update(offset_cells=0),
    lambda a: a.update(offsets="uniform"),
])
def test_rules2_to_4_a_table_architecture_that_does_not_fit_the_codec_is_refused(tmp_path, edit):
    write(tmp_path / "m", generator=table_generator())
    _edit_metadata(tmp_path / "m", lambda m: edit(m["architecture"]))
    with pytest.raises(InvalidInput) as err:
        load_model(tmp_path / "m")
    assert err.value.code == "model.invalid"
