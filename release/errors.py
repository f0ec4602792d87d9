"""One error tree for the whole appliance, at the bottom of the import graph.

Rules:
1. Every error a user can cause is an ``HganError`` with a stable ``code``
   (never renamed), an ``exit_status`` and a ``hint`` that says how to fix it.
2. ``InvalidInput`` (exit 2): the input is wrong (a file, a column, a field).
   ``CheckFailed`` (exit 1): the input is well formed but a check refused it.
3. Messages name the file, the column or the field and a count; they never
   hold a patient value.
4. Caller misuse (a bug in our code) stays a ``RuntimeError`` / ``ValueError``;
   the CLI reports those as "internal error, nothing released".

Codes (each defined once, in ``CODES``):
    schema.unreadable      the schema file cannot be read or is not TOML
    schema.invalid         a field of the schema is missing or wrong
    schema.draft           the schema is an unreviewed draft
    data.unreadable        the data file cannot be read as CSV
    data.empty             the data file has no rows
    data.columns           the data's columns differ from the schema's
    data.type              values of the wrong type in a column
    data.bounds            numeric values outside the schema's bounds
    data.category          values not in the schema's category list
    data.missing           missing values in a column the schema says is not nullable
    data.class_empty       a target class has no rows
    train.options          training options are out of range
    model.unreadable       a model directory is missing, unreadable or holds unexpected files
    model.invalid          a model's metadata or weights do not match its declared architecture
    sample.options         sampling options are out of range or name an unknown column/class
    output.exists          an output path exists and would be overwritten
    audit.inputs           the audit's inputs do not fit together (model or synthetic, sizes, claim)
    audit.report           a report file is not a complete report of this format
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "schema.unreadable": "the schema file cannot be read or is not TOML",
    "schema.invalid": "a field of the schema is missing or wrong",
    "schema.draft": "the schema is an unreviewed draft",
    "data.unreadable": "the data file cannot be read as CSV",
    "data.empty": "the data file has no rows",
    "data.columns": "the data's columns differ from the schema's",
    "data.type": "values of the wrong type in a column",
    "data.bounds": "numeric values outside the schema's bounds",
    "data.category": "values not in the schema's category list",
    "data.missing": "missing values in a column the schema says is not nullable",
    "data.class_empty": "a target class has no rows",
    "train.options": "training options are out of range",
    "model.unreadable": "a model directory is missing, unreadable or holds unexpected files",
    "model.invalid": "a model's metadata or weights do not match its declared architecture",
    "sample.options": "sampling options are out of range or name an unknown column/class",
    "output.exists": "an output path exists and would be overwritten",
    "audit.inputs": "the audit's inputs do not fit together (model or synthetic, sizes, claim)",
    "audit.report": "a report file is not a complete report of this format",
}


class HganError(Exception):
    """An error the user can fix; carries a stable code, an exit status and a hint."""

    exit_status = 1

    def __init__(self, code: str, message: str, *, hint: str = "") -> None:
        if code not in CODES:
            raise RuntimeError(f"unregistered error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, "hint": self.hint}

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" + (f"\n  hint: {self.hint}" if self.hint else "")


class InvalidInput(HganError):
    """The input (a file, column, field or option) is wrong: exit status 2."""

    exit_status = 2


class CheckFailed(HganError):
    """A well-formed input was refused by a check: exit status 1."""

    exit_status = 1
