"""Findings and the rule registry: every check is a pure function with a stable rule id."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar


class Severity(enum.StrEnum):
    ERROR = "error"  # the image will fail under CNPG: the test fails
    WARNING = "warning"  # works, but fragile or against advice: reported, test passes
    INFO = "info"  # worth knowing (e.g. what an extension requires)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    path: str
    message: str
    platform: str | None = None
    #: The runs that show this finding (e.g. the update paths of one difference), when several can.
    cases: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["cases"] = list(self.cases)
        return data

    def __str__(self) -> str:
        where = f"[{self.platform}] " if self.platform else ""
        seen = f" [{cases_text(self.cases)}]" if self.cases else ""
        return f"{self.rule} {self.severity.value}: {where}{self.path}: {self.message}{seen}"


#: Cases a line names before it counts the rest (the findings JSON lists every one).
CASES_SHOWN = 12


def cases_text(cases: Sequence[str]) -> str:
    """``3 case(s): a, b, c``; past ``CASES_SHOWN`` the rest counted (861 update paths of one
    note made a 30-line terminal line), never the message itself cut."""
    shown = ", ".join(cases[:CASES_SHOWN])
    more = f", ... and {len(cases) - CASES_SHOWN} more (all in --findings-json)" if len(cases) > CASES_SHOWN else ""
    return f"{len(cases)} case(s): {shown}{more}"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    check: Callable[..., Iterable[Finding]]
    scope: str  # "platform" (one PlatformImage) or "image" (the whole, possibly multi-arch, image)


RULES: dict[str, Rule] = {}
F = TypeVar("F", bound=Callable[..., Iterable[Finding]])


def rule(rule_id: str, title: str, scope: str = "platform") -> Callable[[F], F]:
    """Register a check under a stable id (the id is part of the harness's interface)."""

    def register(fn: F) -> F:
        if rule_id in RULES:
            raise RuntimeError(f"duplicate rule id {rule_id}")
        RULES[rule_id] = Rule(rule_id, title, fn, scope)
        return fn

    return register


def error(rule_id: str, path: str, message: str) -> Finding:
    return Finding(rule_id, Severity.ERROR, path, message)


def warning(rule_id: str, path: str, message: str) -> Finding:
    return Finding(rule_id, Severity.WARNING, path, message)


def info(rule_id: str, path: str, message: str) -> Finding:
    return Finding(rule_id, Severity.INFO, path, message)


# -- findings as reports show them (dicts: what --findings-json holds, gathered from every worker) --------
def grouped_findings(findings: Iterable[dict]) -> list[dict]:
    """Findings as dicts, equal ones (from several tests, backends or workers) merged: their cases
    joined. Sorted by rule, so a rule's findings stand together."""
    merged: dict[tuple, dict] = {}
    for finding in findings:
        key = (finding["rule"], finding.get("platform") or "", finding["path"], finding["message"], finding["severity"])
        if key in merged:
            cases = merged[key].setdefault("cases", [])
            cases.extend(c for c in finding.get("cases", []) if c not in cases)
        else:
            merged[key] = {**finding, "cases": list(finding.get("cases", []))}
    return [merged[key] for key in sorted(merged)]


#: Severities as a summary lists them: errors first, and the word for a group of them.
SUMMARY_GROUPS = ((Severity.ERROR, "error"), (Severity.WARNING, "warning"), (Severity.INFO, "note"))


def finding_line(finding: dict) -> str:
    """One finding on one line, in full (a cut-off message hides what is wrong)."""
    platform = f"[{finding['platform']}] " if finding.get("platform") else ""
    cases = finding.get("cases") or []
    seen = f" [{cases_text(cases)}]" if cases else ""
    return f"{finding['rule']} {finding['severity']}: {platform}{finding['path']}: {finding['message']}{seen}"


def summary_lines(grouped: list[dict]) -> list[str]:
    """The terminal summary of (grouped) findings: the counts, then every error, warning and note
    under its severity, each named in full."""
    by_severity = {
        severity.value: [f for f in grouped if f["severity"] == severity.value] for severity, _ in SUMMARY_GROUPS
    }
    lines = [", ".join(f"{len(by_severity[s.value])} {word}(s)" for s, word in SUMMARY_GROUPS)]
    for severity, word in SUMMARY_GROUPS:
        group = by_severity[severity.value]
        if group:
            lines.append(f"{word}s ({len(group)}):")
            lines.extend(f"  {finding_line(f)}" for f in group)
    return lines
