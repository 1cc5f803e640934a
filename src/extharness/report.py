"""A Markdown summary of a run, fit for a CI job summary ($GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from extharness.checks.findings import cases_text


def _subject(harness: Any) -> str:
    """What was checked, against which expectations (one line)."""
    request = harness.request
    image = (
        request.image
        or (f"release folder {request.artifacts}" if request.artifacts else None)
        or (f"sources {request.source}" if request.source else "the built-in sample")
    )
    parts = [f"Image: `{image}`"]
    if harness.platforms:
        parts.append("platforms " + ", ".join(f"`{p}`" for p in harness.platforms))
    if harness.expect_tags:
        parts.append("tags " + ", ".join(f"`{t}`" for t in harness.expect_tags))
    if harness.expect_version:
        parts.append(f"version `{harness.expect_version}`")
    return " · ".join(parts)


def markdown_summary(session: pytest.Session, findings: list[dict], harness: Any = None) -> str:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {}) if reporter else {}
    outcomes = {k: len(v) for k, v in stats.items() if k in ("passed", "failed", "error", "skipped", "xfailed")}
    status = "FAILED" if outcomes.get("failed") or outcomes.get("error") else "PASSED"
    lines = [
        f"## extharness: {status}",
        "",
        f"Run at {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}: "
        + (", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "no tests"),
        "",
    ]
    if harness is not None:
        lines += [_subject(harness), ""]
    failed = [r for r in stats.get("failed", []) + stats.get("error", []) if hasattr(r, "nodeid")]
    if failed:
        lines += ["### Failed", ""]
        for report in failed:
            text = str(getattr(report, "longreprtext", "") or "").strip().splitlines()
            lines.append(f"- `{report.nodeid}`: {text[-1] if text else ''}")
        lines.append("")
    skipped = [r for r in stats.get("skipped", []) if hasattr(r, "nodeid")]
    if skipped:
        reasons = Counter(str(r.longrepr[-1]) if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped)
        lines += ["### Skipped", ""] + [f"- {n} x {reason}" for reason, n in reasons.most_common()] + [""]
    shown = [f for f in findings if f["severity"] in ("error", "warning")]
    if shown:
        lines += ["### Findings", "", "| rule | severity | platform | path | message |", "|---|---|---|---|---|"]
        for f in shown:
            cases = f.get("cases") or []
            seen = f" ({cases_text(cases)})" if cases else ""
            message = (f["message"] + seen).replace("|", "\\|")
            lines.append(f"| {f['rule']} | {f['severity']} | {f.get('platform') or ''} | `{f['path']}` | {message} |")
        lines.append("")
    return "\n".join(lines)
