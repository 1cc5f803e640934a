"""The CloudNativePG objects the harness applies, as plain dicts, and CNPG's rules for them.

Pure functions only: rendering a ``Cluster``, a ``Database`` and the ImageVolume probe
``Pod``; checking manifests (ours and the examples under ``cnpg/``) against the rules the
CNPG webhook and CRD enforce; and computing the ``extension_control_path`` /
``dynamic_library_path`` values the operator will set, so tests can assert what CNPG does.

Rules come from CloudNativePG's source (``api/v1`` types, ``internal/webhook/v1``
``validateExtensions`` / ``validateConfiguration``, ``pkg/management/postgres`` extension
configuration, ``pkg/specs`` volumes). A broken rule is a :class:`Finding` with the stable id
``cnpg.manifest.<rule>`` (:data:`RULES`); each rule says whose it is: ``cnpg`` (the operator
would reject the object) or ``harness`` (CNPG accepts it, but it cannot work or does not mean
what it seems to mean), and its message ends in ``[cnpg]`` or ``[harness]``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from extharness.checks.findings import Finding, Severity

#: The label on everything the harness creates in a cluster (its test namespaces, Clusters, Databases).
MANAGED_BY = {"app.kubernetes.io/managed-by": "extharness"}
MANAGED_BY_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())

API_VERSION = "postgresql.cnpg.io/v1"

#: CRD pattern of ``.spec.postgresql.extensions[].name`` (underscores since 1.27.3/1.28.1).
EXTENSION_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$"
_EXTENSION_NAME_RE = re.compile(EXTENSION_NAME_PATTERN)
#: ``ext-`` + name must fit a 63-character DNS label: CNPG 1.29 caps the name at 59.
EXTENSION_NAME_MAX = 59
#: The webhook's limit on ``metadata.name`` of a Cluster.
CLUSTER_NAME_MAX = 50
EXTENSIONS_BASE = "/extensions"
DEFAULT_CONTROL_PATH = ("share",)
DEFAULT_LIBRARY_PATH = ("lib",)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

#: ``shared_preload_libraries`` has its own field; under ``parameters`` the webhook refuses it.
PRELOAD = "shared_preload_libraries"
#: Parameters CloudNativePG owns (``FixedConfigurationParameters`` in ``pkg/postgres``):
#: setting any of them under ``.spec.postgresql.parameters`` is refused by the webhook.
CNPG_FIXED_PARAMETERS = frozenset(
    """
    allow_system_table_mods archive_mode bonjour bonjour_name cluster_name config_file data_directory
    data_sync_retry dynamic_shared_memory_type event_source external_pid_file hba_file hot_standby huge_pages
    ident_file jit_provider listen_addresses logging_collector port primary_conninfo primary_slot_name
    recovery_target recovery_target_action recovery_target_inclusive recovery_target_lsn recovery_target_name
    recovery_target_time recovery_target_timeline recovery_target_xid restore_command shared_preload_libraries
    shared_memory_type unix_socket_directories unix_socket_group unix_socket_permissions wal_level
    wal_log_hints archive_cleanup_command archive_command archive_timeout full_page_writes log_destination
    log_directory log_file_mode log_filename log_rotation_age log_rotation_size log_truncate_on_rotation
    promote_trigger_file recovery_end_command recovery_min_apply_delay restart_after_crash ssl ssl_ca_file
    ssl_cert_file ssl_ciphers ssl_crl_file ssl_dh_params_file ssl_ecdh_curve ssl_key_file
    ssl_max_protocol_version ssl_min_protocol_version ssl_passphrase_command
    ssl_passphrase_command_supports_reload ssl_prefer_server_ciphers stats_temp_directory
    synchronous_standby_names syslog_facility syslog_ident syslog_sequence_numbers syslog_split_messages
    """.split()
)


# -- names and paths CNPG derives ----------------------------------------------------------
def volume_name(extension: str, cnpg_version: str | None = None) -> str:
    """The pod volume CNPG makes for an extension (``pkg/specs/volumes.go``, by version):
    1.27.0-1.27.2 and 1.28.0: ``<name>``; 1.27.3 and 1.28.1: ``<name with _ -> ->``;
    1.27.4, 1.28.2+ and 1.29+ (and an unknown version): ``ext-<name with _ -> ->``."""
    version = _release(cnpg_version)
    if version is not None:
        if version < (1, 27, 3) or version == (1, 28, 0):
            return extension
        if version in ((1, 27, 3), (1, 28, 1)):
            return extension.replace("_", "-")
    return "ext-" + extension.replace("_", "-")


def _release(version: str | None) -> tuple[int, int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def name_problem(name: str, cnpg_version: str | None) -> str | None:
    """Why CNPG ``cnpg_version`` refuses ``.spec.postgresql.extensions[].name``, else None
    (``_`` is accepted only from 1.27.3 / 1.28.1; 1.29's CRD caps the length at 59)."""
    if not _EXTENSION_NAME_RE.match(name):
        return f"{name!r} does not match {EXTENSION_NAME_PATTERN}"
    if len(name) > EXTENSION_NAME_MAX:
        return f"{name!r} is longer than {EXTENSION_NAME_MAX} characters"
    version = _release(cnpg_version)
    if "_" in name and version is not None and (version < (1, 27, 3) or version == (1, 28, 0)):
        return (
            f"{name!r}: CloudNativePG {cnpg_version} accepts no '_' in extension names (from 1.27.3 / 1.28.1); "
            f"use {name.replace('_', '-')!r} (cnpg_name in the profile)"
        )
    return None


def mount_path(extension: str) -> str:
    """Where CNPG mounts the extension image: ``/extensions/<name>`` (name unchanged)."""
    return go_join(EXTENSIONS_BASE, extension)


def go_join(*parts: str) -> str:
    """Go's ``filepath.Join``: join the non-empty parts with ``/`` and clean the result.

    CNPG builds every extension path this way, so ``/lib``, ``./lib`` and ``lib`` all mean
    ``/extensions/<name>/lib``, and ``..`` is resolved (and can leave the mount).
    """
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def cnpg_name_for(extension: str) -> str:
    """A valid ``.spec.postgresql.extensions[].name`` for a PostgreSQL extension name.

    The mount directory is named after it; underscores are legal from CNPG 1.27.3/1.28.1,
    hyphens everywhere, so the portable choice is ``pg_trickle`` -> ``pg-trickle``.
    """
    name = re.sub(r"[^a-z0-9-]+", "-", extension.lower()).strip("-")
    return name[:EXTENSION_NAME_MAX].rstrip("-") or "extension"


# -- what the harness renders --------------------------------------------------------------
@dataclass(frozen=True)
class ImageVolumeExtension:
    """One entry of ``.spec.postgresql.extensions``."""

    name: str
    reference: str
    pull_policy: str | None = "IfNotPresent"
    extension_control_path: tuple[str, ...] = ()
    dynamic_library_path: tuple[str, ...] = ()
    ld_library_path: tuple[str, ...] = ()

    def as_spec(self) -> dict[str, Any]:
        image: dict[str, Any] = {"reference": self.reference}
        if self.pull_policy:
            image["pullPolicy"] = self.pull_policy
        spec: dict[str, Any] = {"name": self.name, "image": image}
        for key, value in (
            ("extension_control_path", self.extension_control_path),
            ("dynamic_library_path", self.dynamic_library_path),
            ("ld_library_path", self.ld_library_path),
        ):
            if value:
                spec[key] = list(value)
        return spec


@dataclass(frozen=True)
class DatabaseExtension:
    """One entry of a Database's ``.spec.extensions``."""

    name: str
    version: str | None = None
    schema: str | None = None
    ensure: str = "present"

    def as_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": self.name, "ensure": self.ensure}
        if self.version:
            spec["version"] = self.version
        if self.schema:
            spec["schema"] = self.schema
        return spec


def _metadata(name: str, namespace: str | None, labels: Mapping[str, str] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def split_settings(settings: Mapping[str, str], preload: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """(shared_preload_libraries, parameters) for a Cluster from a profile's settings.

    A ``shared_preload_libraries`` setting moves into the list (CNPG refuses it under
    ``parameters``), ``$libdir/`` prefixes are dropped (they do not resolve for mounted
    extensions), and duplicates keep their first position.
    """
    libraries: list[str] = []
    for item in [*preload, *str(settings.get(PRELOAD, "")).split(",")]:
        item = item.strip().strip("'\"")
        if item.startswith("$libdir/"):
            item = item[len("$libdir/") :]
        if item and item not in libraries:
            libraries.append(item)
    parameters = {k: str(v) for k, v in settings.items() if k != PRELOAD}
    return libraries, parameters


def render_cluster(
    name: str,
    *,
    image_name: str,
    instances: int = 1,
    storage_size: str = "1Gi",
    storage_class: str | None = None,
    shared_preload_libraries: Sequence[str] = (),
    parameters: Mapping[str, str] | None = None,
    extensions: Sequence[ImageVolumeExtension] = (),
    image_pull_policy: str = "IfNotPresent",
    database: str = "app",
    owner: str = "app",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    enable_superuser_access: bool = False,
) -> dict[str, Any]:
    """A CNPG ``Cluster``: extensions under ``.spec.postgresql.extensions``, preload in its own field.

    ``enable_superuser_access`` gives ``postgres`` a password in the ``<name>-superuser`` secret
    (CNPG's ``enableSuperuserAccess``), for checks that connect as a client over TCP."""
    postgresql: dict[str, Any] = {}
    if shared_preload_libraries:
        postgresql["shared_preload_libraries"] = list(shared_preload_libraries)
    if parameters:
        postgresql["parameters"] = {k: str(v) for k, v in parameters.items()}
    if extensions:
        postgresql["extensions"] = [e.as_spec() for e in extensions]
    storage: dict[str, Any] = {"size": storage_size}
    if storage_class:
        storage["storageClass"] = storage_class
    spec: dict[str, Any] = {
        "instances": instances,
        "imageName": image_name,
        "imagePullPolicy": image_pull_policy,
        "bootstrap": {"initdb": {"database": database, "owner": owner}},
        "storage": storage,
    }
    if postgresql:
        spec["postgresql"] = postgresql
    if enable_superuser_access:
        spec["enableSuperuserAccess"] = True
    return {"apiVersion": API_VERSION, "kind": "Cluster", "metadata": _metadata(name, namespace, labels), "spec": spec}


def render_database(
    name: str,
    *,
    cluster: str,
    extensions: Sequence[DatabaseExtension],
    database: str = "app",
    owner: str = "app",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A CNPG ``Database`` whose ``.spec.extensions`` the primary applies with CREATE EXTENSION."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Database",
        "metadata": _metadata(name, namespace, labels),
        "spec": {
            "name": database,
            "owner": owner,
            "cluster": {"name": cluster},
            "extensions": [e.as_spec() for e in extensions],
        },
    }


PROBE_MOUNT = "/ext"
#: Lines the probe prints; ``imagevolume.classify_probe`` reads them back.
PROBE_MARKER = "EXTHARNESS_PROBE="


def probe_script(extension: str, mount: str = PROBE_MOUNT) -> str:
    """The probe's shell: tell a missing mount, an empty one and a missing control file apart."""
    control = f"{mount}/share/extension/{extension}.control"
    return (
        f'if [ ! -d "{mount}" ]; then echo "{PROBE_MARKER}no-mount"; exit 4; fi; '
        f'if [ -f "{control}" ]; then echo "{PROBE_MARKER}found {control}"; exit 0; fi; '
        f'if [ -z "$(ls -A "{mount}" 2>/dev/null)" ]; then echo "{PROBE_MARKER}empty"; exit 3; fi; '
        f'echo "{PROBE_MARKER}control-missing {control}"; ls -R "{mount}" 2>&1 | head -n 40; exit 5'
    )


def render_probe_pod(
    name: str,
    *,
    extension_image: str,
    operand_image: str,
    extension: str,
    pull_policy: str = "IfNotPresent",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod that mounts ``extension_image`` as an image volume and tests for its control file.

    The extension image is ``FROM scratch`` (no shell), so the check runs in the operand image,
    as UID 26 like CNPG's postgres, with the extension image mounted read-only at ``/ext``.
    """
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(name, namespace, {"app.kubernetes.io/name": "extharness-probe", **(labels or {})}),
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsUser": 26, "runAsGroup": 26, "runAsNonRoot": True},
            "volumes": [{"name": "ext", "image": {"reference": extension_image, "pullPolicy": pull_policy}}],
            "containers": [
                {
                    "name": "probe",
                    "image": operand_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c", probe_script(extension)],
                    "volumeMounts": [{"name": "ext", "mountPath": PROBE_MOUNT, "readOnly": True}],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }
            ],
        },
    }


# -- what CNPG will set --------------------------------------------------------------------
def _paths(entry: Mapping[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = entry.get(key) or []
    return [str(v) for v in value] if value else list(default)


def cnpg_settings(
    extensions: Iterable[Mapping[str, Any] | ImageVolumeExtension], user: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``extension_control_path`` / ``dynamic_library_path`` CNPG writes for ``extensions``.

    Only when at least one extension is declared: ``$system`` / ``$libdir`` first, then each
    extension's directories (default ``share`` / ``lib``) joined under ``/extensions/<name>``
    in list order, then any value the user configured.
    """
    entries = [e.as_spec() if isinstance(e, ImageVolumeExtension) else dict(e) for e in extensions]
    if not entries:
        return {}
    user = user or {}
    result: dict[str, str] = {}
    for guc, key, first, default in (
        ("extension_control_path", "extension_control_path", "$system", DEFAULT_CONTROL_PATH),
        ("dynamic_library_path", "dynamic_library_path", "$libdir", DEFAULT_LIBRARY_PATH),
    ):
        items = [first]
        for entry in entries:
            items += [go_join(EXTENSIONS_BASE, str(entry["name"]), p) for p in _paths(entry, key, default)]
        items += [p for p in str(user.get(guc, "")).split(":") if p]
        result[guc] = ":".join(items)
    return result


def ld_library_path(extensions: Iterable[Mapping[str, Any] | ImageVolumeExtension]) -> str:
    """The ``LD_LIBRARY_PATH`` CNPG gives postgres for the extensions' ``ld_library_path``."""
    entries = [e.as_spec() if isinstance(e, ImageVolumeExtension) else dict(e) for e in extensions]
    return ":".join(
        go_join(EXTENSIONS_BASE, str(e["name"]), str(p)) for e in entries for p in e.get("ld_library_path") or []
    )


# -- validation ----------------------------------------------------------------------------
#: The manifest rules: ``cnpg.manifest.<rule>`` -> (whose rule it is, what it says). ``cnpg``: the
#: operator's webhook or CRD rejects the object; ``harness``: CNPG accepts it, but it cannot work.
RULES: dict[str, tuple[str, str]] = {
    f"cnpg.manifest.{rule}": (owner, title)
    for rule, owner, title in (
        ("api-version", "cnpg", f"apiVersion is {API_VERSION}"),
        ("kind", "harness", "the manifest is a Cluster or a Database"),
        ("cluster-name", "cnpg", f"a Cluster has a name of at most {CLUSTER_NAME_MAX} characters"),
        ("spec", "cnpg", "spec is an object"),
        ("instances", "cnpg", "spec.instances is at least 1"),
        ("storage", "cnpg", "spec.storage has a size or a pvcTemplate"),
        ("image-tag", "cnpg", "the operand image's tag carries the PostgreSQL version"),
        ("operand-pg18", "harness", "extensions come with a PostgreSQL 18 operand image"),
        ("operand-minimal", "harness", "extensions come with a -minimal- operand image (nothing shadows them)"),
        ("extensions-shape", "cnpg", "extensions are a list of objects with the fields CNPG knows"),
        ("extension-name", "cnpg", "an extension name is set and matches CNPG's pattern and length"),
        ("extension-name-length", "harness", "a Database's extension name fits PostgreSQL's 63 bytes"),
        ("extension-duplicate", "cnpg", "extension names are unique"),
        ("volume-collision", "cnpg", "extension names stay unique with underscores turned into hyphens"),
        ("image-reference", "cnpg", "each extension names its image"),
        ("pull-policy", "cnpg", "an image pullPolicy is one CNPG supports"),
        ("path-empty", "cnpg", "no empty directory in an extension's paths"),
        ("path-duplicate", "cnpg", "no directory twice in extension_control_path / dynamic_library_path"),
        ("path-absolute", "harness", "extension paths are relative to the image root"),
        ("path-outside", "harness", "extension paths stay inside the mounted image (no '..')"),
        ("path-search", "harness", "an extension path is one directory, not a search path"),
        ("unknown-field", "cnpg", "no field CNPG's strict decoding rejects"),
        ("preload-list", "cnpg", "shared_preload_libraries is a list"),
        ("preload-empty", "cnpg", "no empty library name in shared_preload_libraries"),
        ("preload-name", "harness", "shared_preload_libraries lists bare library names, one per item"),
        ("parameters-shape", "cnpg", "parameters are a map of names to strings"),
        ("parameters-fixed", "cnpg", "no parameter CloudNativePG owns under parameters"),
        ("database-required", "cnpg", "a Database has spec.name and spec.owner"),
        ("database-reserved", "cnpg", "a Database is not named postgres, template0 or template1"),
        ("database-cluster", "cnpg", "a Database names its Cluster"),
        ("database-cluster-match", "harness", "a Database names the Cluster it is applied with"),
        ("extension-ensure", "cnpg", "ensure is present or absent"),
        ("extension-version", "cnpg", "a Database's extension version is a string"),
        ("pair-cluster", "harness", "the Database points at the Cluster of the pair"),
        ("pair-extension", "harness", "the Database installs the extension under test"),
    )
}


def manifest_finding(rule: str, path: str, message: str) -> Finding:
    """A broken manifest rule (``rule`` without the ``cnpg.manifest.`` prefix) at ``path``."""
    rule_id = f"cnpg.manifest.{rule}"
    owner, _title = RULES[rule_id]
    return Finding(rule_id, Severity.ERROR, path, f"{message} [{owner}]")


@dataclass
class ManifestReport:
    """The findings of one manifest (empty when it passes)."""

    kind: str
    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def __str__(self) -> str:
        head = f"{self.kind}/{self.name}"
        if self.ok:
            return f"{head}: ok"
        return "\n".join([f"{head}: {len(self.findings)} problem(s)", *(f"  {f}" for f in self.findings)])


_f = manifest_finding


def check_extension_name(name: Any, path: str) -> list[Finding]:
    """CNPG's CRD rules for an extension name (required, pattern, 59 characters)."""
    if not isinstance(name, str) or name == "":
        return [
            _f("extension-name", path, 'Required value: "name" must be set (CNPG webhook: "value cannot be empty")')
        ]
    problems = []
    if not _EXTENSION_NAME_RE.match(name):
        problems.append(
            _f(
                "extension-name",
                path,
                f"Invalid value: {name!r}: should match '{EXTENSION_NAME_PATTERN}' (CNPG: lowercase alphanumeric "
                "characters, underscores (_) or hyphens (-), starting and ending with an alphanumeric character; "
                "underscores only from CNPG 1.27.3/1.28.1)",
            )
        )
    if len(name) > EXTENSION_NAME_MAX:
        problems.append(
            _f(
                "extension-name",
                path,
                f"Too long: may not be longer than {EXTENSION_NAME_MAX} characters, got {len(name)} (CNPG 1.29: the "
                "volume name ext-<name> must fit a 63-character DNS label)",
            )
        )
    return problems


def check_image_path(value: Any, path: str, extension: str) -> list[Finding]:
    """A directory of ``extension_control_path`` / ``dynamic_library_path`` / ``ld_library_path``.

    CNPG's webhook rejects empty entries; it joins the rest under ``/extensions/<name>`` with
    Go's ``filepath.Join``. The harness also requires a plain relative path inside the image:
    an absolute path only looks like a path of the operand image (CNPG strips the ``/``), and
    ``..`` is resolved by the join and can point outside the mounted image.
    """
    if not isinstance(value, str) or value == "":
        return [_f("path-empty", path, 'Invalid value: "": value cannot be empty')]
    problems = []
    mount = mount_path(extension)
    resolved = go_join(mount, value)
    if value.startswith("/"):
        problems.append(
            _f(
                "path-absolute",
                path,
                f"Invalid value: {value!r}: must be relative to the image root (CNPG joins it under {mount}, so it "
                f"means {resolved}, not {value} in the operand image); write {value.lstrip('/') or '.'!r}",
            )
        )
    if ".." in value.split("/"):
        outside = not (resolved == mount or resolved.startswith(mount + "/"))
        where = f"outside the image mounted at {mount}" if outside else f"{resolved}"
        problems.append(
            _f(
                "path-outside",
                path,
                f"Invalid value: {value!r}: must stay inside the image, without '..' (CNPG's filepath.Join resolves "
                f"it to {where})",
            )
        )
    if "$" in value or ":" in value:
        problems.append(
            _f(
                "path-search",
                path,
                f"Invalid value: {value!r}: a directory inside the image, not a search path ('$' and ':' "
                "are not expanded here)",
            )
        )
    return problems


def check_extensions(extensions: Any, base: str = "spec.postgresql.extensions") -> list[Finding]:
    """CNPG's rules for ``.spec.postgresql.extensions`` (CRD + webhook ``validateExtensions``)."""
    if extensions in (None, []):
        return []
    if not isinstance(extensions, list):
        return [_f("extensions-shape", base, f"Invalid value: must be a list, got {type(extensions).__name__}")]
    problems: list[Finding] = []
    names: set[str] = set()
    volumes: dict[str, str] = {}
    for i, entry in enumerate(extensions):
        path = f"{base}[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(_f("extensions-shape", path, "Invalid value: must be an object with name and image"))
            continue
        name = entry.get("name")
        name_problems = check_extension_name(name, f"{path}.name")
        problems += name_problems
        if isinstance(name, str) and name:
            if name in names:
                problems.append(
                    _f(
                        "extension-duplicate",
                        f"{path}.name",
                        f"Duplicate value: {name!r} (extension names must be unique)",
                    )
                )
            else:
                names.add(name)
                sanitized = name.replace("_", "-")
                if sanitized in volumes:
                    problems.append(
                        _f(
                            "volume-collision",
                            f"{path}.name",
                            f"Invalid value: {name!r}: extension name results in duplicate volume name "
                            f"{sanitized!r} after sanitization (underscores are converted to hyphens); it collides "
                            f"with {volumes[sanitized]!r}",
                        )
                    )
                else:
                    volumes[sanitized] = name
        image = entry.get("image")
        if not isinstance(image, Mapping) or not image.get("reference"):
            problems.append(_f("image-reference", f"{path}.image", "Invalid value: An image reference is required"))
        else:
            policy = image.get("pullPolicy")
            if policy is not None and policy not in PULL_POLICIES:
                problems.append(
                    _f(
                        "pull-policy",
                        f"{path}.image.pullPolicy",
                        f"Unsupported value: {policy!r}: supported values: {', '.join(repr(p) for p in PULL_POLICIES)}",
                    )
                )
        for key in ("extension_control_path", "dynamic_library_path", "ld_library_path", "bin_path"):
            values = entry.get(key)
            if values is None:
                continue
            if not isinstance(values, list):
                problems.append(_f("extensions-shape", f"{path}.{key}", "Invalid value: must be a list of directories"))
                continue
            seen: set[str] = set()
            for j, value in enumerate(values):
                item = f"{path}.{key}[{j}]"
                problems += check_image_path(value, item, name if isinstance(name, str) else "<name>")
                if isinstance(value, str) and value:
                    if value in seen and key in ("extension_control_path", "dynamic_library_path"):
                        problems.append(_f("path-duplicate", item, f"Duplicate value: {value!r}"))
                    seen.add(value)
        unknown = sorted(
            set(entry)
            - {"name", "image", "extension_control_path", "dynamic_library_path", "ld_library_path", "bin_path", "env"}
        )
        if unknown:
            problems.append(
                _f("unknown-field", path, f"unknown field(s) {', '.join(unknown)} (strict decoding rejects them)")
            )
    return problems


def check_preload(libraries: Any, base: str = "spec.postgresql.shared_preload_libraries") -> list[Finding]:
    """Bare library names: ``$libdir/x`` or a path does not resolve for a mounted extension."""
    if libraries in (None, []):
        return []
    if not isinstance(libraries, list):
        return [_f("preload-list", base, "Invalid value: must be a list of library names")]
    problems = []
    for i, lib in enumerate(libraries):
        path = f"{base}[{i}]"
        if not isinstance(lib, str) or not lib.strip():
            problems.append(_f("preload-empty", path, "Invalid value: a library name cannot be empty"))
        elif lib.startswith("$libdir/") or "/" in lib:
            bare = lib.rsplit("/", 1)[-1]
            problems.append(
                _f(
                    "preload-name",
                    path,
                    f"Invalid value: {lib!r}: give the bare library name {bare!r}; shared_preload_libraries does not "
                    "strip '$libdir/' or search dynamic_library_path for a path, so a library mounted under "
                    "/extensions/<name>/lib is not found",
                )
            )
        elif "," in lib:
            problems.append(_f("preload-name", path, f"Invalid value: {lib!r}: one library per list item"))
    return problems


def check_parameters(parameters: Any, base: str = "spec.postgresql.parameters") -> list[Finding]:
    """The webhook's ``validateConfiguration``: no CNPG-owned parameters, string values."""
    if parameters in (None, {}):
        return []
    if not isinstance(parameters, Mapping):
        return [_f("parameters-shape", base, "Invalid value: must be a map of parameter names to strings")]
    problems = []
    for key, value in parameters.items():
        path = f"{base}.{key}"
        if key == PRELOAD:
            problems.append(
                _f(
                    "parameters-fixed",
                    path,
                    f"Invalid value: {value!r}: Can't set fixed configuration parameter (CNPG: list the libraries "
                    "under .spec.postgresql.shared_preload_libraries instead)",
                )
            )
        elif key in CNPG_FIXED_PARAMETERS:
            problems.append(
                _f("parameters-fixed", path, f"Invalid value: {value!r}: Can't set fixed configuration parameter")
            )
        if not isinstance(value, str):
            problems.append(
                _f("parameters-shape", path, f"Invalid value: {value!r}: parameter values must be strings (quote them)")
            )
    return problems


def image_tag(reference: str) -> str:
    """The tag CNPG reads from ``imageName``: "latest" when there is none, "" for a bare digest."""
    name, _, digest = reference.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    return "" if digest else "latest"


def check_image_name(image: Any, path: str = "spec.imageName") -> list[Finding]:
    """The webhook's ``validateImageName``: the tag must carry the PostgreSQL version."""
    if not image:
        return []
    tag = image_tag(str(image))
    if tag == "latest":
        return [
            _f(
                "image-tag",
                path,
                f"Invalid value: {image!r}: Can't use 'latest' as image tag as we can't detect upgrades",
            )
        ]
    if tag == "":
        return [
            _f("image-tag", path, f"Invalid value: {image!r}: Can't use just the image sha as we can't detect upgrades")
        ]
    if not re.match(r"^\d+(\.\d+)?", tag):
        return [
            _f(
                "image-tag",
                path,
                f"Invalid value: {image!r}: invalid version tag (CNPG reads the PostgreSQL version from "
                "the tag: 18, 18.1, 18-minimal-trixie, ...)",
            )
        ]
    return []


def check_cluster(doc: Mapping[str, Any]) -> ManifestReport:
    """CNPG's rules for a ``Cluster`` manifest, as far as they concern extensions and their config."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    report = ManifestReport("Cluster", name or "<unnamed>")
    v = report.findings
    if doc.get("apiVersion") != API_VERSION:
        v.append(_f("api-version", "apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}"))
    if not name:
        v.append(_f("cluster-name", "metadata.name", "Required value"))
    elif len(name) > CLUSTER_NAME_MAX:
        v.append(
            _f(
                "cluster-name",
                "metadata.name",
                f"Invalid value: {name!r}: the maximum length of a cluster name is {CLUSTER_NAME_MAX} characters",
            )
        )
    spec = doc.get("spec") or {}
    if not isinstance(spec, Mapping):
        v.append(_f("spec", "spec", "Invalid value: must be an object"))
        return report
    instances = spec.get("instances", 1)
    if not isinstance(instances, int) or isinstance(instances, bool) or instances < 1:
        v.append(
            _f("instances", "spec.instances", f"Invalid value: {instances!r}: should be greater than or equal to 1")
        )
    if not (spec.get("storage") or {}).get("size") and not (spec.get("storage") or {}).get("pvcTemplate"):
        v.append(_f("storage", "spec.storage", "Required value: set storage.size (or a pvcTemplate)"))
    v += check_image_name(spec.get("imageName"))
    postgresql = spec.get("postgresql") or {}
    extensions = postgresql.get("extensions")
    v += check_extensions(extensions)
    v += check_preload(postgresql.get(PRELOAD))
    v += check_parameters(postgresql.get("parameters"))
    if extensions and not spec.get("imageName") and not spec.get("imageCatalogRef"):
        v.append(
            _f(
                "operand-pg18",
                "spec.imageName",
                "Required value: extensions need a PostgreSQL 18 operand image (extension_control_path is new in 18)",
            )
        )
    image = str(spec.get("imageName") or "")
    if extensions and re.search(r"postgresql:18(\.\d+)*(-standard)?(-(trixie|bookworm))?$", image):
        v.append(
            _f(
                "operand-minimal",
                "spec.imageName",
                f"{image!r} is a standard operand image: its own copies of "
                "extensions in $system/$libdir shadow mounted ones; use a "
                "-minimal- image",
            )
        )
    return report


def check_database(doc: Mapping[str, Any], cluster: str | None = None) -> ManifestReport:
    """CNPG's rules for a ``Database`` manifest (CRD + webhook ``validateExtensions``)."""
    name = str((doc.get("metadata") or {}).get("name") or "")
    report = ManifestReport("Database", name or "<unnamed>")
    v = report.findings
    if doc.get("apiVersion") != API_VERSION:
        v.append(_f("api-version", "apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}"))
    spec = doc.get("spec") or {}
    for key in ("name", "owner"):
        if not spec.get(key):
            v.append(_f("database-required", f"spec.{key}", "Required value"))
    if spec.get("name") in ("postgres", "template0", "template1"):
        v.append(_f("database-reserved", "spec.name", f"Invalid value: the name {spec['name']} is reserved"))
    ref = (spec.get("cluster") or {}).get("name")
    if not ref:
        v.append(_f("database-cluster", "spec.cluster.name", "Required value: the Cluster hosting the database"))
    elif cluster is not None and ref != cluster:
        v.append(
            _f(
                "database-cluster-match",
                "spec.cluster.name",
                f"Invalid value: {ref!r}: the Cluster is named {cluster!r}",
            )
        )
    extensions = spec.get("extensions") or []
    if not isinstance(extensions, list):
        v.append(_f("extensions-shape", "spec.extensions", "Invalid value: must be a list"))
        return report
    seen: set[str] = set()
    for i, ext in enumerate(extensions):
        path = f"spec.extensions[{i}]"
        if not isinstance(ext, Mapping) or not ext.get("name"):
            v.append(_f("extension-name", f"{path}.name", "Required value"))
            continue
        ext_name = str(ext["name"])
        if ext_name in seen:
            v.append(_f("extension-duplicate", f"{path}.name", f"Duplicate value: {ext_name!r}"))
        seen.add(ext_name)
        if len(ext_name.encode()) > 63:
            v.append(
                _f(
                    "extension-name-length",
                    f"{path}.name",
                    f"Invalid value: {ext_name!r}: PostgreSQL names are at most 63 bytes",
                )
            )
        ensure = ext.get("ensure", "present")
        if ensure not in ("present", "absent"):
            v.append(
                _f(
                    "extension-ensure",
                    f"{path}.ensure",
                    f'Unsupported value: {ensure!r}: supported values: "present", "absent"',
                )
            )
        unknown = sorted(set(ext) - {"name", "ensure", "version", "schema"})
        if unknown:
            v.append(_f("unknown-field", path, f"unknown field(s) {', '.join(unknown)}"))
        if "version" in ext and not isinstance(ext["version"], str):
            v.append(
                _f(
                    "extension-version",
                    f"{path}.version",
                    f"Invalid value: {ext['version']!r}: must be a string (quote it: YAML reads 1.0 as a number)",
                )
            )
    return report


def check_manifest(doc: Mapping[str, Any], cluster: str | None = None) -> ManifestReport:
    kind = doc.get("kind")
    if kind == "Cluster":
        return check_cluster(doc)
    if kind == "Database":
        return check_database(doc, cluster)
    report = ManifestReport(str(kind), str((doc.get("metadata") or {}).get("name") or "<unnamed>"))
    report.findings.append(_f("kind", "kind", f"not a Cluster or Database: {kind!r}"))
    return report


def check_pair(cluster: Mapping[str, Any], database: Mapping[str, Any], extension: str) -> list[Finding]:
    """Cross-object rules: the Database installs ``extension`` on that Cluster, which preloads what it needs."""
    problems: list[Finding] = []
    cluster_name = (cluster.get("metadata") or {}).get("name")
    db_spec = database.get("spec") or {}
    if (db_spec.get("cluster") or {}).get("name") != cluster_name:
        problems.append(_f("pair-cluster", "spec.cluster.name", f"the Database must point at Cluster {cluster_name!r}"))
    names = [e.get("name") for e in db_spec.get("extensions") or [] if isinstance(e, Mapping)]
    if extension not in names:
        problems.append(
            _f("pair-extension", "spec.extensions", f"{extension!r} is not in the Database's extensions {names}")
        )
    return problems
