"""Check results and how they are shown: aligned text (coloured on a terminal) or JSON.

Exit codes shared by every runbook command: 0 all checks passed (warnings allowed),
1 a check failed, 2 the command could not run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TextIO

EXIT_PASS, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    WARN = "WARN"
    INFO = "INFO"
    SKIP = "SKIP"  # not applicable here, with the reason; never a failure


COLOURS = {
    Status.PASS: "32",
    Status.FAIL: "31",
    Status.WARN: "33",
    Status.INFO: "36",
    Status.SKIP: "36",
}


@dataclass
class Check:
    name: str
    status: Status
    expected: str = ""
    actual: str = ""
    detail: str = ""


@dataclass
class Report:
    title: str
    checks: list[Check] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(
        self, name: str, ok: bool, expected: object = "", actual: object = "", detail: str = ""
    ) -> Check:
        check = Check(name, Status.PASS if ok else Status.FAIL, str(expected), str(actual), detail)
        self.checks.append(check)
        return check

    def note(self, name: str, status: Status, actual: object = "", detail: str = "") -> None:
        self.checks.append(Check(name, status, "", str(actual), detail))

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status is Status.FAIL]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.failures else EXIT_PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": "fail" if self.failures else "pass",
            "checks": [asdict(c) for c in self.checks],
            "tables": self.tables,
            "notes": self.notes,
        }


def _paint(text: str, status: Status, colour: bool) -> str:
    return f"\033[{COLOURS[status]}m{text}\033[0m" if colour else text


def format_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Rows of dicts as aligned columns under their keys."""
    if not rows:
        return ["  (none)"]
    headers = list(rows[0])
    cells = [[str(row.get(h, "")) for h in headers] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return [line, "  " + "  ".join("-" * w for w in widths), *body]


def render_text(report: Report, out: TextIO, colour: bool = False) -> None:
    print(report.title, file=out)
    width = max((len(c.name) for c in report.checks), default=0)
    for check in report.checks:
        tag = _paint(f"{check.status.value:<4}", check.status, colour)
        parts = [f"  {tag}  {check.name:<{width}}"]
        if check.expected:
            parts.append(f"expected {check.expected}")
        if check.actual:
            parts.append(f"{'actual ' if check.expected else ''}{check.actual}")
        if check.detail:
            parts.append(f"({check.detail})")
        print("  ".join(parts).rstrip(), file=out)
    for name, rows in report.tables.items():
        print(f"\n{name}", file=out)
        for line in format_table(rows):
            print(line, file=out)
    for note in report.notes:
        print(f"\n{note}", file=out)
    if report.checks:
        failed = len(report.failures)
        verdict = f"{failed} check(s) failed" if failed else "all checks passed"
        print(
            f"\nResult: {_paint(verdict, Status.FAIL if failed else Status.PASS, colour)}", file=out
        )


def render_json(report: Report, out: TextIO) -> None:
    json.dump(report.as_dict(), out, indent=2, default=str)
    out.write("\n")
