"""Errors the harness reports to its user as one clear line."""


class HarnessError(Exception):
    """A problem with the harness's input or environment, explained for a human.

    The message is shown as-is (no traceback), so it must say what is wrong and,
    where possible, how to fix it.
    """


class EnvironmentMissing(HarnessError):
    """Something this machine lacks (an engine, a cluster, a tool): tests skip on it."""
