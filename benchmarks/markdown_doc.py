"""Replace one '## ' section of a Markdown file, keeping the others (shared by the benchmark scripts)."""

from __future__ import annotations

from pathlib import Path

HEADER = "# Benchmarks\n\nFigures measured on this repository's code; rerun to refresh.\n"


def write_section(doc: Path, section: str, body: str) -> None:
    """Put ``body`` (which starts with the ``section`` heading) in place of that section of ``doc``."""
    text = doc.read_text() if doc.exists() else HEADER
    start = text.find(section)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(section))
        text = text[:start] + body + (text[nxt + 1 :] if nxt >= 0 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.rstrip("\n") + "\n")
