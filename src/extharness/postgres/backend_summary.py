"""Which PostgreSQL backends the sql tier ran, and why any did not (for the terminal summary).

Read from the test reports on the controller, so it works with pytest-xdist too.
"""

from __future__ import annotations

BACKENDS = ("native", "composite", "imagevolume")


def backend_of(nodeid: str) -> str | None:
    """``native`` for ``tests/sql/test_x.py::test_y[native-1.0-1.1]``; None outside the sql tier."""
    if "tests/sql/" not in nodeid or not nodeid.endswith("]") or "[" not in nodeid:
        return None
    first = nodeid.rsplit("[", 1)[1][:-1].split("-", 1)[0]
    return first if first in BACKENDS else None


def summarize(stats: dict[str, list]) -> list[str]:
    """One line per backend: what ran, or the reason it did not."""
    counts: dict[str, dict[str, int]] = {}
    reasons: dict[str, str] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in stats.get(outcome, []):
            name = backend_of(getattr(report, "nodeid", "") or "")
            if name is None or getattr(report, "when", "call") == "teardown" and outcome == "passed":
                continue
            if outcome == "passed" and getattr(report, "when", "call") != "call":
                continue
            per = counts.setdefault(name, {})
            per[outcome] = per.get(outcome, 0) + 1
            if outcome == "skipped" and name not in reasons and isinstance(report.longrepr, tuple):
                reasons[name] = str(report.longrepr[2]).removeprefix("Skipped: ").removeprefix(f"{name} backend: ")
    lines = []
    for name in BACKENDS:
        if name not in counts:
            continue
        per = counts[name]
        text = ", ".join(f"{v} {k}" for k, v in per.items())
        if per.get("passed") or per.get("failed") or per.get("error"):
            lines.append(f"{name:12} ran: {text}")
        else:
            lines.append(f"{name:12} did not run: {reasons.get(name, text)}")
    return lines


def write(terminalreporter) -> None:
    lines = summarize(terminalreporter.stats)
    if lines:
        terminalreporter.section("extharness sql backends")
        for line in lines:
            terminalreporter.write_line(line)
