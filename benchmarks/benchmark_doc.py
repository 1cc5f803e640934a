"""What the benchmark scripts write into their documents: machine facts and one '## ' section."""

from __future__ import annotations

import os
import re
from pathlib import Path

HEADER = "# Benchmarks\n\nFigures measured on this repository's code; rerun to refresh.\n"


def write_section(doc: Path, section: str, body: str, before: str | None = None) -> None:
    """Put ``body`` (which starts with the ``section`` heading) in place of that section of ``doc``;
    a section ``doc`` lacks goes before the heading ``before`` when there is one, else at the end."""
    text = doc.read_text() if doc.exists() else HEADER
    start = text.find(section)
    if start < 0:
        at = text.find(before) if before else -1
        text = text[:at] + body + text[at:] if at >= 0 else text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(section))
        text = text[:start] + body + (text[nxt + 1 :] if nxt >= 0 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip("\n") + "\n")


def cpu_model() -> str:
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return "unknown CPU"
    return found.group(1).strip() if found else "unknown CPU"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
