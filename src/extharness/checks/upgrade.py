"""Upgrade findings (``sql.upgrade.*``): pure functions over what an upgrade run recorded.

An upgrade run (:class:`UpgradeRecord`) is plain data: what the server said while the old
version was installed from the old image, updated after the candidate image took its place,
and compared with a fresh install of the candidate. Each check turns it into findings with
a stable rule id whose path names the object, statement or update path that is wrong, and
whose message has the differing attribute in full (never cut off). Findings that several
update paths share are merged into one that lists them all (:func:`group_findings`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from extharness.checks.findings import Finding, Severity, error, info

#: The rule ids of this module (the harness's interface: CI and reports match on them).
RULES = {
    "sql.upgrade.install-old": "the old image installs its own default version",
    "sql.upgrade.update-failed": "ALTER EXTENSION ... UPDATE succeeds after the candidate image took the old one's place",
    "sql.upgrade.version": "after the update the extension is at the candidate's default version",
    "sql.upgrade.missing-object": "every object of a fresh install exists after the update",
    "sql.upgrade.extra-object": "no object is left after the update that a fresh install lacks",
    "sql.upgrade.object-differs": "each object after the update equals the fresh install's",
    "sql.upgrade.data-changed": "the profile's data written before the update reads back the same",
    "sql.upgrade.smoke": "the profile's smoke SQL passes on the updated extension",
    "sql.upgrade.preload": "preload loads the candidate's library and its background workers come up",
    "sql.upgrade.downgrade": "an update back to the old version is refused, leaving the extension as it was",
    "sql.upgrade.unreplayable": "update paths that cannot be replayed inside one image (reported once)",
    "sql.upgrade.run": "the upgrade run completes: the old image's server starts, the candidate's takes its place",
}


@dataclass
class UpgradeRecord:
    """What one image-to-image upgrade run saw (filled in by ``postgres.upgrade``)."""

    extension: str
    old: str  # the old image, as given (--upgrade-from)
    old_version: str | None  # the old image's default_version
    new_version: str | None  # the candidate's default_version
    installed_version: str | None = None
    install_error: str | None = None
    update_error: str | None = None
    update_statement: str | None = None  # the script line the failing update stopped at, when known
    version_after: str | None = None
    after_update: dict[str, str] = field(default_factory=dict)
    fresh: dict[str, str] = field(default_factory=dict)
    data_check: str | None = None  # the profile's check query
    data_before: list[list] | None = None
    data_after: list[list] | None = None
    data_error: str | None = None
    smoke: list[tuple[str, bool, str]] = field(default_factory=list)  # (sql, ok, what happened)
    preload: list[str] = field(default_factory=list)
    workers_expected: list[str] = field(default_factory=list)
    workers_missing: list[str] = field(default_factory=list)
    module_expected: tuple[str, str] | None = None  # (module name, version) the candidate reports
    modules_seen: list[tuple[str, str, str]] = field(default_factory=list)  # (name, version, file)
    downgrade_error: str | None = None  # PostgreSQL's refusal (None: the downgrade went through)
    version_after_downgrade: str | None = None
    members_after_downgrade: dict[str, str] | None = None
    server_log: str = ""
    seconds: float | None = None  # the run's wall time, from the old release's start to the downgrade tried

    @property
    def case(self) -> str:
        """The update path this run replayed, e.g. ``1.0 -> 1.1 (image pg_ticker-1.0)``."""
        return f"{self.old_version} -> {self.new_version} (from {self.old})"

    @property
    def reached_update(self) -> bool:
        return self.install_error is None and self.update_error is None


# -- member objects ------------------------------------------------------------------------------------
def member_findings(after_update: Mapping[str, str], fresh: Mapping[str, str], case: str) -> list[Finding]:
    """One finding per object that differs between the updated extension and a fresh install.

    An object's definition is a ``" | "``-joined list of attributes (``member_objects``): the
    message names the attributes that differ, each in full on both sides.
    """
    found: list[Finding] = []
    for identity in sorted(set(fresh) - set(after_update)):
        found.append(
            _error(
                "sql.upgrade.missing-object",
                identity,
                f"missing after the update (a fresh install creates it: {fresh[identity] or 'no attributes'}); "
                "the update script forgets to create it",
                case,
            )
        )
    for identity in sorted(set(after_update) - set(fresh)):
        found.append(
            _error(
                "sql.upgrade.extra-object",
                identity,
                "present after the update but not in a fresh install; the update script forgets to drop it "
                "(or the install script to create it)",
                case,
            )
        )
    for identity in sorted(set(fresh) & set(after_update)):
        if fresh[identity] != after_update[identity]:
            found.append(
                _error(
                    "sql.upgrade.object-differs",
                    identity,
                    attribute_difference(after_update[identity], fresh[identity]),
                    case,
                )
            )
    return found


def attribute_difference(after_update: str, fresh: str) -> str:
    """Which attributes of one object differ, in full.

    >>> attribute_difference("r {a=r/o} | a int", "r {a=arw/o} | a int")
    'after the update: r {a=r/o}; fresh install: r {a=arw/o}'
    >>> attribute_difference("r | a int | comment 'log'", "r | a int")
    "after the update: comment 'log'; fresh install: (none)"
    """
    left, right = after_update.split(" | "), fresh.split(" | ")
    if len(left) == len(right):
        pairs = [(a, b) for a, b in zip(left, right) if a != b]
    else:  # an attribute only one side has (a comment, column comments): name what is not shared
        only_left = [a for a in left if a not in right]
        only_right = [b for b in right if b not in left]
        pairs = [(" | ".join(only_left), " | ".join(only_right))]
    return "; ".join(f"after the update: {a or '(none)'}; fresh install: {b or '(none)'}" for a, b in pairs)


# -- one image-to-image run ----------------------------------------------------------------------------
def install_findings(record: UpgradeRecord) -> list[Finding]:
    if record.install_error is None:
        return []
    return [
        _error(
            "sql.upgrade.install-old",
            record.old,
            f"CREATE EXTENSION {record.extension} from the old image failed, so nothing could be updated: "
            f"{record.install_error}",
            record.case,
        )
    ]


def update_findings(record: UpgradeRecord) -> list[Finding]:
    """The update itself: it ran, and it ended at the candidate's default version."""
    if record.install_error is not None:
        return install_findings(record)
    if record.update_error is not None:
        where = record.update_statement or f"ALTER EXTENSION {record.extension} UPDATE TO '{record.new_version}'"
        return [
            _error(
                "sql.upgrade.update-failed",
                where,
                f"ALTER EXTENSION {record.extension} UPDATE TO '{record.new_version}' failed after the candidate "
                f"image replaced the one with {record.old_version}: {record.update_error}",
                record.case,
            )
        ]
    if record.version_after != record.new_version:
        return [
            _error(
                "sql.upgrade.version",
                record.extension,
                f"after ALTER EXTENSION ... UPDATE the extension is at {record.version_after}, the candidate's "
                f"default_version is {record.new_version}",
                record.case,
            )
        ]
    return []


def data_findings(record: UpgradeRecord) -> list[Finding]:
    if record.data_check is None or not record.reached_update:
        return []
    if record.data_error is not None:
        return [
            _error(
                "sql.upgrade.data-changed",
                record.data_check,
                f"the data check fails after the update: {record.data_error}",
                record.case,
            )
        ]
    if record.data_before != record.data_after:
        return [
            _error(
                "sql.upgrade.data-changed",
                record.data_check,
                f"returned {record.data_before} before the update and {record.data_after} after it: the update "
                "script changes users' data",
                record.case,
            )
        ]
    return []


def smoke_findings(record: UpgradeRecord) -> list[Finding]:
    if not record.reached_update:
        return []
    return [
        _error("sql.upgrade.smoke", sql, f"after the update: {what}", record.case)
        for sql, ok, what in record.smoke
        if not ok
    ]


def preload_findings(record: UpgradeRecord) -> list[Finding]:
    """With shared_preload_libraries, the candidate's library is what runs, and its workers are up."""
    if not record.preload:
        return []
    found: list[Finding] = []
    if record.module_expected is not None:
        name, version = record.module_expected
        seen = [
            (n, v) for n, v, f in record.modules_seen if f.rsplit("/", 1)[-1] in {f"{p}.so" for p in record.preload}
        ]
        if (name, version) not in seen:
            found.append(
                _error(
                    "sql.upgrade.preload",
                    ",".join(record.preload),
                    f"after the candidate image replaced the old one, pg_get_loaded_modules() shows {seen or 'nothing'} "
                    f"for shared_preload_libraries={','.join(record.preload)}, not the candidate's {name} {version}",
                    record.case,
                )
            )
    if record.workers_missing:
        found.append(
            _error(
                "sql.upgrade.preload",
                ",".join(record.workers_missing),
                f"background worker(s) {record.workers_missing} not running after the restart on the candidate "
                f"image (shared_preload_libraries={','.join(record.preload)}); server log: {record.server_log}",
                record.case,
            )
        )
    return found


def downgrade_findings(record: UpgradeRecord) -> list[Finding]:
    """Going back to the old version must be refused by PostgreSQL and change nothing."""
    if not record.reached_update or record.old_version == record.new_version:
        return []
    found: list[Finding] = []
    if record.downgrade_error is None:
        found.append(
            _error(
                "sql.upgrade.downgrade",
                f"{record.extension}--{record.new_version}--{record.old_version}",
                f"ALTER EXTENSION {record.extension} UPDATE TO '{record.old_version}' went through on the candidate "
                f"image: a downgrade path is shipped; CNPG users who roll the image back keep the new library "
                "with old objects",
                record.case,
            )
        )
    if record.version_after_downgrade != record.new_version:
        found.append(
            _error(
                "sql.upgrade.downgrade",
                record.extension,
                f"after the refused downgrade the extension is at {record.version_after_downgrade}, "
                f"not {record.new_version}",
                record.case,
            )
        )
    elif record.members_after_downgrade is not None and record.members_after_downgrade != record.after_update:
        found.extend(
            replace(f, rule="sql.upgrade.downgrade", message=f"changed by the refused downgrade: {f.message}")
            for f in member_findings(record.members_after_downgrade, record.after_update, record.case)
        )
    return found


# -- what the later checks of one record need -----------------------------------------------------------
def not_updated(record: UpgradeRecord, reported_by: str, cluster: bool = False) -> str | None:
    """Why a check of the updated extension cannot run (the update did not), naming the finding
    ``reported_by`` reports once; None when the update ran."""
    if record.reached_update:
        return None
    findings = update_findings(record)
    first = (on_cluster(findings) if cluster else findings)[0]
    return (
        f"not checked: the update from {record.old} did not run ({first.rule} {first.path}, reported by {reported_by})"
    )


def nothing_to_downgrade(record: UpgradeRecord) -> str | None:
    """The usage problem when the old release is already at the candidate's version."""
    if record.old_version != record.new_version:
        return None
    return (
        f"the release to upgrade from ({record.old}) is already at {record.new_version}: "
        "give --upgrade-from an earlier release"
    )


# -- the same checks on a real cluster -------------------------------------------------------------------
#: The rule ids of an upgrade made on a CloudNativePG Cluster (``cnpg.upgrade.*``): the same checks
#: over the same record, made by a changed image reference and a bumped ``Database`` version.
CLUSTER_RULES = {
    "cnpg." + rule.removeprefix("sql."): text for rule, text in RULES.items() if rule != "sql.upgrade.unreplayable"
}


def on_cluster(findings: Iterable[Finding]) -> list[Finding]:
    """``sql.upgrade.*`` findings renamed ``cnpg.upgrade.*``: what they say held on a real Cluster."""
    return [replace(f, rule="cnpg." + f.rule.removeprefix("sql.")) for f in findings]


# -- paths that cannot be replayed inside one image -----------------------------------------------------
def unreplayable_finding(extension: str, pairs: Iterable[tuple[str, str]]) -> Finding | None:
    """One note for every update path whose start version no script of this image installs."""
    pairs = sorted(set(pairs))
    if not pairs:
        return None
    starts = sorted({a for a, _b in pairs})
    return Finding(
        "sql.upgrade.unreplayable",
        Severity.INFO,
        extension,
        f"{len(pairs)} update path(s) from {len(starts)} version(s) without an install script in this image "
        f"({', '.join(starts)}): not replayable inside this image; give --upgrade-from with an earlier "
        "release to test them",
        cases=tuple(f"{a} -> {b}" for a, b in pairs),
    )


# -- grouping ------------------------------------------------------------------------------------------
def group_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings equal but for their cases merged into one listing every case, in a stable order."""
    merged: dict[tuple, Finding] = {}
    for finding in findings:
        key = (finding.rule, finding.severity, finding.path, finding.message, finding.platform)
        if key in merged:
            cases = merged[key].cases + tuple(c for c in finding.cases if c not in merged[key].cases)
            merged[key] = replace(merged[key], cases=cases)
        else:
            merged[key] = finding
    return sorted(merged.values(), key=lambda f: (f.rule, f.path, f.message))


def _error(rule_id: str, path: str, message: str, case: str) -> Finding:
    return replace(error(rule_id, path, message), cases=(case,))


_NEAR_LINE = re.compile(r'extension script file "([^"]+)", near line (\d+)')


def failing_statement(context: str, scripts: Mapping[str, bytes]) -> str | None:
    """``file:line: text`` of the script line PostgreSQL's error context points at, if it does.

    >>> failing_statement('extension script file "x--1--2.sql", near line 2', {"/share/extension/x--1--2.sql": b"a\\nCREATE INDEX i ON t (c);\\n"})
    'x--1--2.sql:2: CREATE INDEX i ON t (c);'
    """
    match = _NEAR_LINE.search(context or "")
    if not match:
        return None
    name, line = match.group(1), int(match.group(2))
    for path, content in scripts.items():
        if path.rsplit("/", 1)[-1] == name:
            lines = content.decode(errors="replace").splitlines()
            text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
            return f"{name}:{line}: {text}" if text else f"{name}:{line}"
    return f"{name}:{line}"


__all__ = [
    "CLUSTER_RULES",
    "RULES",
    "UpgradeRecord",
    "attribute_difference",
    "data_findings",
    "downgrade_findings",
    "failing_statement",
    "group_findings",
    "info",
    "install_findings",
    "member_findings",
    "on_cluster",
    "preload_findings",
    "smoke_findings",
    "unreplayable_finding",
    "update_findings",
]
