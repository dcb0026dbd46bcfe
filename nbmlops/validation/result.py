"""The outcome of one validation: passed or not, the violations, how to show them."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .schema import Schema

__all__ = ["ValidationResult", "VIOLATION_COLUMNS"]

VIOLATION_COLUMNS = ("column", "check", "expected", "observed")


@dataclass
class ValidationResult:
    """What :func:`nbmlops.validate` found. ``passed`` is False when there is any violation."""

    passed: bool
    data_label: str
    reference_label: str
    rows: int
    #: ``[{"column", "check", "expected", "observed"}]``
    violation_records: list[dict[str, str]]
    #: per-column statistics (null share, min/max, PSI), thresholds, drift sample size
    summary: dict[str, Any]
    schema: Schema
    #: where it was recorded: "run RUN cell SEQ", "store (validation N)", or None
    recorded: str | None = None
    #: the store id, when recorded directly (in a notebook the writer records it later)
    validation_id: int | None = None
    data_fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> pd.DataFrame:
        """The violations as a DataFrame with columns column, check, expected, observed."""
        import pandas as pd

        return pd.DataFrame(self.violation_records, columns=list(VIOLATION_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "data": self.data_label,
            "reference": self.reference_label,
            "rows": self.rows,
            "violations": self.violation_records,
            "summary": self.summary,
            "recorded": self.recorded,
            "validation_id": self.validation_id,
            "notes": self.notes,
        }

    def headline(self) -> str:
        n = len(self.violation_records)
        verdict = "passed" if self.passed else f"FAILED: {n} violation{'s' if n != 1 else ''}"
        return f"validation of {self.data_label} against {self.reference_label}: {verdict}"

    def __str__(self) -> str:
        lines = [self.headline() + f" ({self.rows} rows, {len(self.schema.columns)} columns)"]
        if self.violation_records:
            rows = [VIOLATION_COLUMNS, *[tuple(v[k] for k in VIOLATION_COLUMNS)
                                         for v in self.violation_records]]
            widths = [min(60, max(len(r[i]) for r in rows)) for i in range(len(VIOLATION_COLUMNS))]
            for i, row in enumerate(rows):
                cells = [_clip(c, w).ljust(w) for c, w in zip(row, widths, strict=True)]
                lines.append("  " + "  ".join(cells).rstrip())
                if i == 0:
                    lines.append("  " + "  ".join("-" * w for w in widths))
        lines.extend(self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<ValidationResult {self.headline()}>"

    def _repr_html_(self) -> str:
        e = html.escape
        color = "#1a7f37" if self.passed else "#cf222e"
        parts = [f'<div class="nbmlops-validation"><b style="color:{color}">'
                 f"{e(self.headline())}</b> <small>({self.rows} rows)</small>"]
        if self.violation_records:
            parts.append('<table><thead><tr>' + "".join(f"<th>{e(c)}</th>"
                                                        for c in VIOLATION_COLUMNS)
                         + "</tr></thead><tbody>")
            for v in self.violation_records:
                parts.append("<tr>" + "".join(f"<td>{e(str(v[c]))}</td>"
                                              for c in VIOLATION_COLUMNS) + "</tr>")
            parts.append("</tbody></table>")
        parts.extend(f"<div><small>{e(n)}</small></div>" for n in self.notes)
        parts.append("</div>")
        return "".join(parts)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
