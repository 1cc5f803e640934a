"""Errors the harness reports to its user as one clear line."""


class HarnessError(Exception):
    """A problem with the harness's input or environment, explained for a human.

    The message is shown as-is (no traceback), so it must say what is wrong and,
    where possible, how to fix it.
    """


class EnvironmentMissing(HarnessError):
    """Something this machine lacks (an engine, a cluster, a tool): tests skip on it."""


def last_output_line(*outputs: str | bytes | None, default: str = "none") -> str:
    """The last non-empty line of the first of ``outputs`` that has one, for messages like
    "... did not finish within 60s (last output: ...)"."""
    for output in outputs:
        text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
        for line in reversed(text.splitlines()):
            if line.strip():
                return line.strip()
    return default
