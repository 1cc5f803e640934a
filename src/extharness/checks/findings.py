"""Findings and the rule registry: every check is a pure function with a stable rule id."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
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
        seen = f" [{len(self.cases)} case(s): {', '.join(self.cases)}]" if self.cases else ""
        return f"{self.rule} {self.severity.value}: {where}{self.path}: {self.message}{seen}"


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
