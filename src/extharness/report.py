"""A Markdown summary of a run, fit for a CI job summary ($GITHUB_STEP_SUMMARY)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest


def markdown_summary(session: pytest.Session, findings: list[dict]) -> str:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {}) if reporter else {}
    outcomes = {k: len(v) for k, v in stats.items() if k in ("passed", "failed", "error", "skipped", "xfailed")}
    status = "FAILED" if outcomes.get("failed") or outcomes.get("error") else "PASSED"
    lines = [
        f"## extharness: {status}",
        "",
        f"Run at {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}: "
        + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) or "no tests",
        "",
    ]
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
            message = f["message"].replace("|", "\\|")
            lines.append(f"| {f['rule']} | {f['severity']} | {f.get('platform') or ''} | `{f['path']}` | {message} |")
        lines.append("")
    return "\n".join(lines)
