"""The audit report: versioned JSON round trip, documented fields, self-contained HTML, no row values."""

from __future__ import annotations

import json
import re
from dataclasses import fields

import numpy as np
import pytest

from hgan.audit.report import CONFIDENTIALITY, FIELD_DOCS, FORMAT, HTML_NAME, JSON_NAME, AuditReport, render_html, write_report
from hgan.audit.run import audit
from hgan.release.errors import InvalidInput
from tests.conftest import mixed_frame, mixed_schema

NUMERIC = ("marker", "creat")


@pytest.fixture(scope="module")
def leaky():
    """The harshest case for leaks: the 'synthetic' rows are the training rows."""
    schema = mixed_schema()
    train, holdout = mixed_frame(400, seed=0), mixed_frame(200, seed=1)
    report = audit(synthetic=train.copy(), train=train, holdout=holdout, schema=schema, seed=0,
                   claimed_epsilon=1.0)
    return report, train


def test_json_round_trips_and_has_the_format(leaky):
    report, _ = leaky
    raw = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert raw["format"] == FORMAT == "hgan-audit/1"
    assert AuditReport.from_dict(raw) == report


def test_every_field_is_documented():
    assert set(FIELD_DOCS) == {f.name for f in fields(AuditReport)}


def test_from_dict_refuses_another_format_and_missing_fields(leaky):
    report, _ = leaky
    for raw in ({**report.to_dict(), "format": "hgan-audit/0"},
                {k: v for k, v in report.to_dict().items() if k != "attacks"}):
        with pytest.raises(InvalidInput) as exc:
            AuditReport.from_dict(raw)
        assert exc.value.code == "audit.report"


def test_html_is_self_contained_with_one_roc_svg_per_attack(leaky):
    report, _ = leaky
    page = render_html(report)
    assert page.count("aria-label='ROC curve of") == len(report.attacks) == 4
    assert "aria-label='real vs synthetic marginal shares'" in page
    assert "aria-label='association difference'" in page
    assert "aria-label='distance to the closest synthetic row'" in page
    assert CONFIDENTIALITY in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<link" not in page
    assert "broken" in page


def test_no_training_row_values_in_json_or_html(leaky, tmp_path):
    report, train = leaky
    out = write_report(report, tmp_path / "r")
    text = (out / JSON_NAME).read_text() + (out / HTML_NAME).read_text()
    for column in NUMERIC:
        values = train[column].dropna().to_numpy()
        values = values[np.abs(values * 1000 - np.round(values * 1000)) > 1e-6]  # 3+ decimals
        assert len(values) > 50
        for v in values:
            assert repr(float(v)) not in text, column
            if v >= 10:
                assert not re.search(rf"(?<![\d.]){re.escape(f'{v:.3f}')}(?!\d)", text), column


def test_write_refuses_an_existing_non_empty_directory(leaky, tmp_path):
    report, _ = leaky
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "x").write_text("keep")
    with pytest.raises(InvalidInput) as exc:
        write_report(report, tmp_path / "r")
    assert exc.value.code == "output.exists"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["x"]
