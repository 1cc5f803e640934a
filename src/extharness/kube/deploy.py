"""Deploy the extension with CloudNativePG and verify it on the primary; collect what went wrong.

``CnpgDeployment`` is a context manager over one test namespace: it applies the ``Cluster``
and ``Database``, waits until the cluster is healthy and the Database's extensions are
applied, checks the pod mounts (ImageVolume path), and runs SQL on the primary through the
API server (``kubernetes.stream`` exec of ``psql`` in the ``postgres`` container: no port
forwarding, no client credentials). A Cluster made with ``superuser_access`` also takes client
connections (``connect``: psycopg as ``postgres`` through a port-forward on 127.0.0.1), for
checks written for psycopg, such as the upgrade's (``kube.upgrade``). On failure ``collect_diagnostics`` writes the cluster's
status and conditions, events, pod descriptions and logs, and the operator's logs to an
artifacts folder. On exit the namespace is deleted unless the cluster is kept.

The checks on API objects (``cluster_health``, ``database_state``, ``mount_problems``,
``rollout_problems``, ``pod_failure``) are pure functions over the dicts the API returns. What
the cluster checks find wrong is a :class:`Finding` with one of the stable ids of :data:`RULES`
(:func:`cluster_finding`).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from extharness.checks.findings import Finding, Severity
from extharness.errors import HarnessError
from extharness.kube import manifests
from extharness.kube.imagevolume import FALLBACK, IMAGEVOLUME
from extharness.postgres.profiles import Profile, SmokeStep
from extharness.runtime import waits
from extharness.runtime.settings import limit_of

GROUP, VERSION = "postgresql.cnpg.io", "v1"
HEALTHY_PHASE = "Cluster in healthy state"
WEBHOOK_WARMUP = 90.0
#: Failed pods of the Cluster's jobs (initdb) after which the harness stops waiting.
FAILED_JOB_PODS = 2
#: Where CNPG instances put PostgreSQL's socket (local peer auth as postgres works there).
CNPG_SOCKET_DIR = "/controller/run"
#: Waiting reasons that will not fix themselves: fail fast instead of waiting for the timeout.
STUCK_REASONS = (
    "CreateContainerError",
    "CreateContainerConfigError",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "RunContainerError",
)


@dataclass(frozen=True)
class DeploymentSpec:
    """What to deploy, on which path, and what to verify."""

    mode: str  # IMAGEVOLUME or FALLBACK
    extension: str  # the PostgreSQL extension (pg_trickle)
    operand_image: str  # Cluster imageName: the minimal operand, or the composite image
    extension_image: str | None = None  # ImageVolume path: the reference the nodes can get
    cnpg_name: str | None = None  # .spec.postgresql.extensions[].name (default: derived)
    expected_version: str | None = None
    preload: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    background_workers: tuple[str, ...] = ()
    smoke: tuple[SmokeStep, ...] = ()
    instances: int = 1
    cluster_name: str = "extharness"
    database: str = "app"
    owner: str = "app"
    storage_size: str = "1Gi"
    ld_library_path: tuple[str, ...] = ()
    cnpg_version: str | None = None  # the operator's (volume names and name rules depend on it)
    superuser_access: bool = False  # enableSuperuserAccess: connect() as postgres through a port-forward

    @property
    def extension_name(self) -> str:
        return self.cnpg_name or manifests.cnpg_name_for(self.extension)


def spec_for(
    mode: str,
    *,
    extension: str,
    operand_image: str,
    extension_image: str | None = None,
    profile: Profile | None = None,
    expected_version: str | None = None,
    instances: int = 1,
    cluster_name: str = "extharness",
    cnpg_version: str | None = None,
) -> DeploymentSpec:
    """The deployment of ``extension`` on ``mode``, with what its profile says to preload and check."""
    return DeploymentSpec(
        mode=mode,
        extension=extension,
        operand_image=operand_image,
        extension_image=extension_image,
        cnpg_name=profile.cnpg_name if profile else None,
        expected_version=expected_version,
        preload=tuple(profile.preload) if profile else (),
        settings=dict(profile.settings) if profile else {},
        background_workers=tuple(profile.background_workers) if profile else (),
        smoke=tuple(profile.smoke) if profile else (),
        instances=instances,
        cluster_name=cluster_name,
        ld_library_path=tuple(profile.ld_library_path) if profile else (),
        cnpg_version=cnpg_version,
    )


def render(spec: DeploymentSpec, namespace: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Cluster and Database the harness applies for ``spec`` (the same checks as the examples)."""
    if spec.mode not in (IMAGEVOLUME, FALLBACK):
        raise HarnessError(f"unknown deployment mode {spec.mode!r}")
    preload, parameters = manifests.split_settings(spec.settings, spec.preload)
    extensions: list[manifests.ImageVolumeExtension] = []
    if spec.mode == IMAGEVOLUME:
        if not spec.extension_image:
            raise HarnessError("the ImageVolume path needs the extension image reference")
        problem = manifests.name_problem(spec.extension_name, spec.cnpg_version)
        if problem:
            raise HarnessError(f"extension name for CloudNativePG: {problem}")
        extensions.append(
            manifests.ImageVolumeExtension(
                spec.extension_name, spec.extension_image, ld_library_path=spec.ld_library_path
            )
        )
    labels = dict(manifests.MANAGED_BY)
    cluster = manifests.render_cluster(
        spec.cluster_name, image_name=spec.operand_image, instances=spec.instances, storage_size=spec.storage_size,
        shared_preload_libraries=preload, parameters=parameters, extensions=extensions, database=spec.database,
        owner=spec.owner, namespace=namespace, labels=labels, enable_superuser_access=spec.superuser_access,
    )  # fmt: skip
    return cluster, render_extension_database(spec, spec.database, namespace)


def render_extension_database(
    spec: DeploymentSpec, database: str, namespace: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """A ``Database`` of ``spec``'s Cluster with the extension in it (at ``version``, or its default)."""
    return manifests.render_database(
        f"{spec.cluster_name}-{database.replace('_', '-')}", cluster=spec.cluster_name, database=database,
        owner=spec.owner, extensions=[manifests.DatabaseExtension(spec.extension, version=version)],
        namespace=namespace, labels=dict(manifests.MANAGED_BY),
    )  # fmt: skip


# -- the fallback operand image -----------------------------------------------------------
CNPG_POSTGRES_UID = 26


def fallback_operand_name(name: str, key: str) -> str:
    """The fallback operand image's name for extension ``name`` and content ``key``: its tag starts
    with the PostgreSQL major, which CNPG reads from the tag of imageName ("invalid version tag"
    otherwise)."""
    return f"localhost/extharness/cnpg-fallback-{name}:18-{key}"


def build_fallback_operand(engine: Any, operand_image: str, mount: Any, cache_dir: Path) -> str:
    """The composite operand image of the fallback path: ``operand_image`` with the extension's
    files in ``$libdir``/``$system``, owned by UID 26 (CNPG's postgres); built once per content.

    ``mount`` is the sql tier's ``ImageVolumeMount`` of the extension image (its files as the
    mount would show them). Offline, the operand resolves to the minimal operand stand-in.
    """
    from extharness.postgres.base_images import resolve_operand_image
    from extharness.postgres.containers import build_composite_image, composite_tag, postgres_uid_of
    from extharness.runtime.locks import held_lock

    base = resolve_operand_image(operand_image, engine, cache_dir)
    uid = postgres_uid_of(engine, base)
    if uid != CNPG_POSTGRES_UID:
        raise HarnessError(
            f"{base}: postgres is UID {uid}, but CloudNativePG runs it as {CNPG_POSTGRES_UID}; "
            "use a CNPG operand image (--operand-image)"
        )
    tag = composite_tag(engine, base, mount, uid)
    key = tag.rsplit(":", 1)[-1]
    cnpg_tag = fallback_operand_name(mount.name, key)
    lock = cache_dir / "locks" / f"cnpg-fallback-{key}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(lock, f"building {cnpg_tag}"):
        build_composite_image(engine, base, mount.path, tag, uid)
        if not engine.image_exists(cnpg_tag):
            engine.run("tag", tag, cnpg_tag)
    return cnpg_tag


# -- rule ids of the cluster checks --------------------------------------------------------
#: The cnpg tier's rule ids for the deployed Cluster (the harness's interface: CI and reports match
#: on them) and what each checks. The manifests have theirs (``manifests.RULES``), the upgrade on a
#: Cluster too (``checks.upgrade.CLUSTER_RULES``).
RULES = {
    "cnpg.imagevolume.path": "which way the extension reaches the Cluster: ImageVolume, or the composite fallback",
    "cnpg.cluster.healthy": "the Cluster reaches 'Cluster in healthy state' with every instance ready",
    "cnpg.database.applied": "the Database resource's extensions are applied (CNPG ran CREATE EXTENSION)",
    "cnpg.imagevolume.mount": "every instance pod has the extension's image volume, mounted at /extensions/<name>",
    "cnpg.settings.search-path": "extension_control_path and dynamic_library_path are what CNPG sets for the extensions",
    "cnpg.extension.version": "pg_extension has the extension, at the expected version",
    "cnpg.preload": "shared_preload_libraries holds the profile's libraries",
    "cnpg.workers": "the profile's background workers run on the primary",
    "cnpg.smoke": "the profile's smoke SQL gives the expected rows on the primary",
    "cnpg.rollout": "a changed extension image reference rolls every instance onto the new image",
}


def cluster_finding(rule: str, subject: str, message: str, severity: Severity = Severity.ERROR) -> Finding:
    """A finding of the cluster check ``rule`` about ``subject`` (a pod, a setting, a library...)."""
    if rule not in RULES:
        raise ValueError(f"unknown cnpg rule id {rule!r} (add it to deploy.RULES)")
    return Finding(rule, severity, subject, message)


# -- pure checks over API objects ----------------------------------------------------------
def cluster_health(cluster: Mapping[str, Any]) -> tuple[bool, str]:
    """(healthy, one-line summary) from a Cluster object."""
    status = cluster.get("status") or {}
    spec = cluster.get("spec") or {}
    phase = status.get("phase") or "no phase yet"
    ready = status.get("readyInstances") or 0
    wanted = spec.get("instances", 1)
    healthy = phase == HEALTHY_PHASE and ready >= wanted
    conditions = "; ".join(
        f"{c.get('type')}={c.get('status')}" + (f" ({c.get('message')})" if c.get("message") else "")
        for c in status.get("conditions") or []
    )
    reason = f" ({status['phaseReason']})" if status.get("phaseReason") else ""
    return healthy, f"phase {phase!r}{reason}, {ready}/{wanted} ready" + (f"; {conditions}" if conditions else "")


def database_state(database: Mapping[str, Any], extensions: Sequence[str]) -> tuple[bool | None, str]:
    """(True applied / False failed / None not reconciled yet, why) from a Database object."""
    status = database.get("status") or {}
    generation = (database.get("metadata") or {}).get("generation")
    # CNPG sets observedGeneration only on success (api/v1/database_funcs.go): a failure is
    # applied=false with a message and no observedGeneration, and must be seen at once.
    if status.get("applied") is False:
        failed = [
            f"extension {e.get('name')}: {e.get('message')}"
            for e in status.get("extensions") or []
            if e.get("applied") is False and e.get("message")
        ]
        return False, f"Database not applied: {'; '.join(failed) or status.get('message') or 'no message'}"
    if status.get("applied") is None or (generation and status.get("observedGeneration", 0) < generation):
        return None, status.get("message") or "not reconciled yet"
    by_name = {e.get("name"): e for e in status.get("extensions") or []}
    problems = []
    for name in extensions:
        entry = by_name.get(name)
        if entry is None:
            return None, f"extension {name} not reported yet"
        if not entry.get("applied"):
            problems.append(f"extension {name} not applied: {entry.get('message') or 'no message'}")
    if problems:
        return False, "; ".join(problems)
    return True, "applied: " + ", ".join(extensions)


def mount_problems(
    pod: Mapping[str, Any], extension_name: str, reference: str | None = None, cnpg_version: str | None = None
) -> list[Finding]:
    """Does the instance pod carry the image volume and mount it at ``/extensions/<name>``?
    (The volume's name depends on the CNPG version; unknown, any of its names is accepted.)
    ``cnpg.imagevolume.mount`` findings about the pod."""
    spec = pod.get("spec") or {}
    subject = str((pod.get("metadata") or {}).get("name") or "pod")
    wanted_path = manifests.mount_path(extension_name)
    if cnpg_version:
        names = {manifests.volume_name(extension_name, cnpg_version)}
    else:
        names = {manifests.volume_name(extension_name, v) for v in ("1.28.0", "1.28.1", "1.28.2")}
    problems: list[str] = []
    volume = next((v for v in spec.get("volumes") or [] if v.get("name") in names and v.get("image")), None)
    if volume is None:
        problems.append(
            f"no image volume {' or '.join(sorted(names))} in the pod spec (volumes: "
            f"{', '.join(v.get('name', '?') for v in spec.get('volumes') or [])}); with the ImageVolume "
            "gate off the API server drops it silently"
        )
    elif reference and volume["image"].get("reference") != reference:
        problems.append(f"volume {volume['name']} mounts {volume['image'].get('reference')!r}, not {reference!r}")
    postgres = next((c for c in spec.get("containers") or [] if c.get("name") == "postgres"), None)
    if postgres is None:
        problems.append("no postgres container in the pod")
    else:
        mount = next((m for m in postgres.get("volumeMounts") or [] if m.get("mountPath") == wanted_path), None)
        if mount is None:
            problems.append(f"the postgres container has no mount at {wanted_path}")
        elif mount.get("name") not in names:
            problems.append(
                f"{wanted_path} is mounted from volume {mount.get('name')!r}, expected {' or '.join(sorted(names))}"
            )
    return [cluster_finding("cnpg.imagevolume.mount", subject, problem) for problem in problems]


def rollout_problems(
    pods: Sequence[Mapping[str, Any]], extension_name: str, reference: str, before: Mapping[str, str], instances: int
) -> list[Finding]:
    """What keeps a rolling update to extension image ``reference`` from having landed: every
    instance pod (``instances`` of them) must be a new pod (its uid not in ``before``, name ->
    uid of the pods before the change), mount ``reference`` and be Ready. ``cnpg.rollout``
    findings about each pod (and the instance count)."""
    problems: list[tuple[str, str]] = []
    if len(pods) < instances:
        problems.append(("instance pods", f"{len(pods)}/{instances} there"))
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        name = str(meta.get("name"))
        if before.get(name) == meta.get("uid"):
            problems.append((name, "not restarted yet"))
            continue
        volumes = [v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("image")]
        refs = [v["image"].get("reference") for v in volumes]
        if reference not in refs:
            problems.append((name, f"mounts {', '.join(map(str, refs)) or 'no image volume'}, not {reference}"))
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if not ready:
            problems.append((name, f"not Ready ({status.get('phase')})"))
    return [cluster_finding("cnpg.rollout", subject, message) for subject, message in problems]


def failed_job_pods(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the Cluster's job pods (initdb, join) that failed, oldest first: CNPG retries
    the job, so the same error repeats until the timeout unless the harness stops at it."""
    failed = [
        p for p in pods
        if (p.get("status") or {}).get("phase") == "Failed" and "job-name" in ((p.get("metadata") or {}).get("labels") or {})
    ]  # fmt: skip
    failed.sort(key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return [str((p.get("metadata") or {}).get("name")) for p in failed]


def log_errors(log: str, limit: int = 3) -> list[str]:
    """The error messages of a CNPG instance-manager log (JSON lines; a plain line as it is)."""
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            msg = str(entry.get("msg") or "")
            if entry.get("level") == "error" or re.search(r"(?i)\berror\b|fatal|panic", msg):
                detail = f": {entry['error']}" if entry.get("error") else ""
                found.append((msg.strip() + detail)[:400])
        elif re.search(r"(?i)\berror\b|fatal|panic", line):
            found.append(line.strip()[:400])
    return list(dict.fromkeys(found))[-limit:]


def pod_failure(pod: Mapping[str, Any]) -> str | None:
    """A container waiting for a reason that will not fix itself, else None."""
    status = pod.get("status") or {}
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            name = (pod.get("metadata") or {}).get("name")
            return f"pod {name} container {container.get('name')}: {waiting['reason']}: {waiting.get('message', '')}"
    return None


def parse_rows(output: str) -> list[list[str]]:
    """``psql -A -t -F '\\t'`` output as rows of fields."""
    return [line.split("\t") for line in output.splitlines() if line != ""]


def typed(text: str, expected: Any) -> Any:
    """A ``psql -A -t`` field as the value a profile expects (t/f, numbers, empty for NULL)."""
    if expected is None:
        return None if text == "" else text
    if isinstance(expected, bool):
        return {"t": True, "f": False}.get(text, text)
    if isinstance(expected, (int, float)):
        try:
            return float(text)
        except ValueError:
            return text
    return text


def expectation_problem(step: SmokeStep, rows: list[list[str]]) -> str | None:
    """Compare psql's rows with the rows a smoke step expects, as the sql tier compares them."""
    from extharness.postgres.sqlchecks import rows_match

    if step.expect is None:
        return None
    actual = [
        tuple(typed(v, e) for v, e in zip(row, want)) if len(row) == len(want) else tuple(row)
        for row, want in zip(rows, step.expect)
    ] + [tuple(r) for r in rows[len(step.expect) :]]
    if rows_match(step.expect, actual):
        return None
    return f"{' '.join(step.sql.split())!r}: expected rows {step.expect}, got {rows}"


# -- the cluster side ----------------------------------------------------------------------
@dataclass
class Diagnostics:
    folder: Path
    summary: str
    files: list[Path] = field(default_factory=list)


class CnpgDeployment:
    """One deployment in its own namespace; a context manager that always cleans up."""

    def __init__(
        self, api_client: Any, spec: DeploymentSpec, *, namespace: str | None = None, keep: bool = False
    ) -> None:
        self.api_client = api_client
        self.spec = spec
        self.namespace = namespace or f"extharness-{uuid.uuid4().hex[:8]}"
        self.keep = keep
        self.cluster_doc, self.database_doc = render(spec, self.namespace)
        self._ready: str | HarnessError | None = None
        self._healthy: str | HarnessError | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> CnpgDeployment:
        self.create_namespace()
        try:
            self.apply()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def create_namespace(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": dict(manifests.MANAGED_BY)},
        }
        try:
            client.CoreV1Api(self.api_client).create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise HarnessError(f"creating namespace {self.namespace}: {exc.status} {exc.reason}") from None

    def apply(self) -> None:
        """Create the Cluster, then the Database (the webhook validates both)."""
        from kubernetes import client

        custom = client.CustomObjectsApi(self.api_client)
        for doc, plural in ((self.cluster_doc, "clusters"), (self.database_doc, "databases")):
            self._create(custom, plural, doc)

    def _create(self, custom: Any, plural: str, doc: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        refused = f"CloudNativePG refused {doc['kind']}/{doc['metadata']['name']}"
        detail = ""

        def created() -> bool | None:
            nonlocal detail
            try:
                custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, doc)
                return True
            except ApiException as exc:
                detail = exc.body or ""
                try:
                    detail = json.loads(detail).get("message", detail)
                except (ValueError, AttributeError):
                    pass
            # A webhook that has just started may not answer yet: retry that, nothing else.
            if "failed calling webhook" in str(detail):
                return None
            raise HarnessError(f"{refused}: {detail}")

        if waits.poll(created, WEBHOOK_WARMUP, interval=3) is None:
            raise HarnessError(f"{refused}: {detail}")

    def cleanup(self) -> None:
        """Delete the namespace (and so the Cluster, Database, PVCs), unless kept."""
        if self.keep:
            return
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            client.CoreV1Api(self.api_client).delete_namespace(self.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- reading -----------------------------------------------------------------------
    def _custom(self, plural: str, name: str) -> dict[str, Any]:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )

    def cluster(self) -> dict[str, Any]:
        return self._custom("clusters", self.spec.cluster_name)

    def database(self, name: str | None = None) -> dict[str, Any]:
        """The Database named ``name`` (default: the one the deployment applied first)."""
        return self._custom("databases", name or self.database_doc["metadata"]["name"])

    def pods(self) -> list[dict[str, Any]]:
        from kubernetes import client

        items = (
            client.CoreV1Api(self.api_client)
            .list_namespaced_pod(self.namespace, label_selector=f"cnpg.io/cluster={self.spec.cluster_name}")
            .items
        )
        return [self.api_client.sanitize_for_serialization(p) for p in items]

    def primary(self) -> str:
        primary = (self.cluster().get("status") or {}).get("currentPrimary")
        if not primary:
            raise HarnessError(f"Cluster {self.spec.cluster_name} has no currentPrimary")
        return primary

    # -- waiting -----------------------------------------------------------------------
    def wait_healthy(self, timeout: float | None = None, poll: float = 5) -> str:
        """Until ``status.phase`` is "Cluster in healthy state" with every instance ready; a
        failure is remembered (the next caller gets it at once, not another timeout)."""
        timeout = limit_of("EXTHARNESS_CNPG_HEALTHY_TIMEOUT") if timeout is None else timeout
        if isinstance(self._healthy, HarnessError):
            raise self._healthy
        try:
            self._healthy = self._wait_healthy(timeout, poll)
        except HarnessError as exc:
            self._healthy = exc
            raise
        return self._healthy

    def _wait_healthy(self, timeout: float, poll: float) -> str:
        stuck: dict[str, int] = {}
        summary = "not read yet"

        def healthy() -> str | None:
            nonlocal summary
            ok, summary = cluster_health(self.cluster())
            if ok:
                return summary
            pods = self.pods()
            for pod in pods:
                failure = pod_failure(pod)
                if failure:
                    stuck[failure] = stuck.get(failure, 0) + 1
                    if stuck[failure] >= 3:
                        raise HarnessError(f"Cluster {self.spec.cluster_name} cannot start: {failure} ({summary})")
            failed = failed_job_pods(pods)
            if len(failed) >= FAILED_JOB_PODS:
                name = failed[-1]
                raise HarnessError(
                    f"Cluster {self.spec.cluster_name} cannot start: {len(failed)} pods of its jobs failed, the last "
                    f"{name}: {self._log_errors(name) or 'no error in its log'} ({summary})"
                )
            return None

        found = waits.poll(healthy, timeout, interval=poll)
        if found is not None:
            return found
        raise HarnessError(
            f"Cluster {self.spec.cluster_name} not healthy after {timeout:.0f}s: {summary} "
            "(raise EXTHARNESS_CNPG_HEALTHY_TIMEOUT)"
        )

    def primary_log_errors(self) -> str:
        """The error lines of the primary's log (for a finding's context); never raises."""
        try:
            return self._log_errors(self.primary())
        except HarnessError as exc:
            return f"(no primary: {exc})"

    def _log_errors(self, pod: str) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            log = client.CoreV1Api(self.api_client).read_namespaced_pod_log(pod, self.namespace, tail_lines=200)
        except ApiException as exc:
            return f"(log unreadable: {exc.status} {exc.reason})"
        return "; ".join(log_errors(log))

    def wait_database(self, timeout: float | None = None, poll: float = 3, name: str | None = None) -> str:
        """Until the Database (``name``, default the deployment's) has applied its extensions."""
        name = name or self.database_doc["metadata"]["name"]
        applied, why = self.settle_database(name, timeout, poll)
        if not applied:
            raise HarnessError(f"Database {name}: {why}")
        return why

    def settle_database(self, name: str, timeout: float | None = None, poll: float = 3) -> tuple[bool, str]:
        """(applied, why) once the operator has reconciled the Database's current generation:
        ``(False, CNPG's message)`` when it refused, e.g. an ``ALTER EXTENSION`` PostgreSQL rejected.

        A failure counts only once it has stood through one retry of the operator: CNPG marks a
        Database failed on any error, a passing one too (the instance's socket not there yet), and
        tries again every 30 s (``databaseReconciliationInterval``,
        internal/management/controller/database_controller.go). A failure whose message changes
        starts its clock again."""
        timeout = limit_of("EXTHARNESS_CNPG_DATABASE_TIMEOUT") if timeout is None else timeout
        why = "not read yet"
        grace = limit_of("EXTHARNESS_CNPG_DATABASE_RETRY")
        failing: tuple[str, float] | None = None  # (message, first seen)

        def settled() -> tuple[bool, str] | None:
            nonlocal why, failing
            state, why = database_state(self.database(name), [self.spec.extension])
            if state is False:
                now = time.monotonic()
                if failing is None or failing[0] != why:
                    failing = (why, now)
                if now - failing[1] < grace:
                    return None
                return False, why
            failing = None
            return None if state is None else (state, why)

        found = waits.poll(settled, timeout, interval=poll)
        if found is not None:
            return found
        if failing is not None:  # still failed when the time ran out: that is the answer
            return False, failing[0]
        raise HarnessError(
            f"Database {name} not applied after {timeout:.0f}s: {why} (raise EXTHARNESS_CNPG_DATABASE_TIMEOUT)"
        )

    def add_database(self, database: str, version: str | None = None) -> str:
        """Apply one more Database of the Cluster with the extension in it; returns its resource name."""
        from kubernetes import client

        doc = render_extension_database(self.spec, database, self.namespace, version)
        self._create(client.CustomObjectsApi(self.api_client), "databases", doc)
        return doc["metadata"]["name"]

    def set_extension_version(self, name: str, version: str) -> None:
        """Set the extension's ``version`` in Database ``name``: CNPG runs ``ALTER EXTENSION ... UPDATE TO``."""
        from kubernetes import client

        patch = [{"op": "add", "path": "/spec/extensions/0/version", "value": version}]
        client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "databases", name, patch, _content_type="application/json-patch+json"
        )

    @contextmanager
    def connect(self, database: str | None = None) -> Iterator[Any]:
        """A psycopg connection as ``postgres`` to the primary, through a port-forward on 127.0.0.1
        (needs ``superuser_access``: the password is CNPG's ``<cluster>-superuser`` secret)."""
        import base64

        import psycopg
        from kubernetes import client

        from extharness.kube.portforward import forwarded_port

        if not self.spec.superuser_access:
            raise HarnessError("connect() needs a Cluster with superuser access (DeploymentSpec.superuser_access)")
        secret = client.CoreV1Api(self.api_client).read_namespaced_secret(
            f"{self.spec.cluster_name}-superuser", self.namespace
        )
        user, password = (base64.b64decode(secret.data[k]).decode() for k in ("username", "password"))
        pod = self.primary()
        with forwarded_port(self.api_client, self.namespace, pod, 5432) as forward:
            try:
                conn = psycopg.connect(
                    host="127.0.0.1", port=forward.port, user=user, password=password,
                    dbname=database or self.spec.database, autocommit=True, connect_timeout=30,
                )  # fmt: skip
            except psycopg.OperationalError as exc:
                raise HarnessError(
                    f"connecting to {pod} as {user}: {' '.join(str(exc).split())}{forward.explain()}"
                ) from None
            with conn:
                yield conn

    def roll_extension_image(self, reference: str, timeout: float | None = None, poll: float = 3) -> str:
        """Change the extension's image reference in the Cluster (what a user does to ship a new
        image) and wait until the rolling update has replaced every instance pod with one that
        mounts ``reference`` and the Cluster is healthy again; returns the health summary."""
        timeout = limit_of("EXTHARNESS_CNPG_HEALTHY_TIMEOUT") if timeout is None else timeout
        from kubernetes import client

        if self.spec.mode != IMAGEVOLUME:
            raise HarnessError("a rolling update of the extension image needs the ImageVolume path")
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in self.pods()}
        patch = [{"op": "replace", "path": "/spec/postgresql/extensions/0/image/reference", "value": reference}]
        client.CustomObjectsApi(self.api_client).patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "clusters", self.spec.cluster_name, patch,
            _content_type="application/json-patch+json",
        )  # fmt: skip
        self.cluster_doc["spec"]["postgresql"]["extensions"][0]["image"]["reference"] = reference
        self.spec = replace(self.spec, extension_image=reference)
        self._ready = self._healthy = None
        problems = ["not read yet"]

        def rolled() -> str | None:
            nonlocal problems
            pods = self.pods()
            problems = [
                f"{f.path}: {f.message}"
                for f in rollout_problems(pods, self.spec.extension_name, reference, before, self.spec.instances)
            ]
            for pod in pods:
                failure = pod_failure(pod)
                if failure:
                    raise HarnessError(f"rolling update to {reference}: {failure}")
            if not problems:
                healthy, summary = cluster_health(self.cluster())
                if healthy:
                    return summary
                problems = [summary]
            return None

        found = waits.poll(rolled, timeout, interval=poll)
        if found is not None:
            return found
        raise HarnessError(
            f"rolling update to {reference} not done after {timeout:.0f}s: {'; '.join(problems)} "
            "(raise EXTHARNESS_CNPG_HEALTHY_TIMEOUT)"
        )

    # -- SQL on the primary ------------------------------------------------------------
    def exec(
        self, pod: str, command: list[str], container: str = "postgres", timeout: float = 120
    ) -> tuple[int, str, str]:
        """Run a command in a pod through the API server; (exit code, stdout, stderr)."""
        from kubernetes import client
        from kubernetes.stream import stream

        resp = stream(
            client.CoreV1Api(self.api_client).connect_get_namespaced_pod_exec,
            pod,
            self.namespace,
            container=container,
            command=command,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        out: list[str] = []
        err: list[str] = []
        deadline = time.monotonic() + timeout
        while resp.is_open() and time.monotonic() < deadline:
            resp.update(timeout=1)
            if resp.peek_stdout():
                out.append(resp.read_stdout())
            if resp.peek_stderr():
                err.append(resp.read_stderr())
        if resp.is_open():
            resp.close()
            raise HarnessError(f"`{' '.join(command[:3])}` in {pod} did not finish within {timeout:.0f}s")
        out.append(resp.read_stdout() if resp.peek_stdout() else "")
        err.append(resp.read_stderr() if resp.peek_stderr() else "")
        try:
            code = resp.returncode  # from the exec status channel
        except (TypeError, KeyError, IndexError, ValueError):
            code = None
        resp.close()
        if code is None:  # no status received: trust stderr
            code = 1 if "".join(err).strip() else 0
        return code, "".join(out), "".join(err)

    def psql(self, sql: str, database: str | None = None, pod: str | None = None) -> list[list[str]]:
        """Rows of one SQL statement run with psql as postgres on the primary (errors raise)."""
        pod = pod or self.primary()
        code, out, err = self.exec(
            pod,
            [
                "psql",
                "-X",
                "-h",
                CNPG_SOCKET_DIR,
                "-U",
                "postgres",
                "-d",
                database or self.spec.database,
                "-v",
                "ON_ERROR_STOP=1",
                "-A",
                "-t",
                "-F",
                "\t",
                "-c",
                sql,
            ],
        )
        if code != 0:
            raise HarnessError(f"psql on {pod}: {sql!r} failed (exit {code}): {err.strip() or out.strip()}")
        return parse_rows(out)

    # -- verification ------------------------------------------------------------------
    def verify_mounts(self) -> list[Finding]:
        """Every instance pod mounts the extension image (``cnpg.imagevolume.mount``, one pod each)."""
        spec = self.spec
        return [
            finding
            for pod in self.pods()
            for finding in mount_problems(pod, spec.extension_name, spec.extension_image, spec.cnpg_version)
        ]

    def ready(self) -> str:
        """Healthy cluster and applied Database, waited for once (a failure is raised again)."""
        if self._ready is None:
            try:
                self._ready = f"{self.wait_healthy()}; {self.wait_database()}"
            except HarnessError as exc:
                self._ready = exc
        if isinstance(self._ready, HarnessError):
            raise self._ready
        return self._ready

    def check_extension(self) -> list[Finding]:
        """``pg_extension`` has the extension, at the expected version (``cnpg.extension.version``)."""
        spec = self.spec
        ext = spec.extension.replace("'", "''")
        rows = self.psql(f"SELECT extname, extversion FROM pg_extension WHERE extname = '{ext}'")
        if not rows:
            message = f"pg_extension has no {spec.extension} in database {spec.database}"
        elif spec.expected_version and rows[0][1] != spec.expected_version:
            message = f"{spec.extension} version {rows[0][1]}, expected {spec.expected_version}"
        else:
            return []
        return [cluster_finding("cnpg.extension.version", spec.extension, message)]

    def check_cnpg_settings(self) -> list[Finding]:
        """PostgreSQL searches the mount: the paths CNPG sets for the declared extensions
        (``cnpg.settings.search-path``, one setting each)."""
        problems = []
        postgresql = self.cluster_doc["spec"].get("postgresql") or {}
        # CNPG appends the user's own values after the extension entries (pkg/postgres/configuration.go)
        expected = manifests.cnpg_settings(postgresql.get("extensions") or [], postgresql.get("parameters") or {})
        for guc, value in expected.items():
            got = self.psql(f"SHOW {guc}")
            if not got or got[0][0] != value:
                problems.append(
                    cluster_finding(
                        "cnpg.settings.search-path",
                        guc,
                        f"{guc} is {got[0][0] if got else None!r}, CNPG should have set {value!r}",
                    )
                )
        return problems

    def check_preload(self) -> list[Finding]:
        """The profile's libraries are in ``shared_preload_libraries`` (``cnpg.preload``, one library each)."""
        preload, _ = manifests.split_settings(self.spec.settings, self.spec.preload)
        if not preload:
            return []
        loaded = [x.strip() for x in (self.psql("SHOW shared_preload_libraries") or [[""]])[0][0].split(",")]
        return [
            cluster_finding("cnpg.preload", lib, f"{lib} is not in shared_preload_libraries ({', '.join(loaded)})")
            for lib in preload
            if lib not in loaded
        ]

    def check_smoke(self) -> list[Finding]:
        """The profile's smoke SQL in order, stopping at the first step that fails (``cnpg.smoke``)."""
        for i, step in enumerate(self.spec.smoke):
            try:
                problem = expectation_problem(step, self.psql(step.sql))
            except HarnessError as exc:
                problem = str(exc)
            if problem:
                return [cluster_finding("cnpg.smoke", f"smoke[{i}]", problem)]  # later steps build on this one
        return []

    def verify_sql(self, smoke: bool = True) -> list[Finding]:
        """Everything on the primary: extension, CNPG's paths, preload, workers, smoke SQL
        (``smoke=False`` after a restart: the smoke SQL has written its data already)."""
        problems = self.check_extension()
        if self.spec.mode == IMAGEVOLUME:
            problems += self.check_cnpg_settings()
        problems += self.check_preload()
        if self.spec.background_workers:
            problems += self.wait_workers()
        return problems + (self.check_smoke() if smoke else [])

    def wait_workers(self, timeout: float | None = None) -> list[Finding]:
        """The profile's background workers appear in ``pg_stat_activity`` (``cnpg.workers``, one each)."""
        timeout = limit_of("EXTHARNESS_CNPG_WORKER_TIMEOUT") if timeout is None else timeout
        missing = list(self.spec.background_workers)
        seen: list[str] = []

        def all_there() -> bool | None:
            nonlocal missing, seen
            seen = [r[0] for r in self.psql("SELECT DISTINCT backend_type FROM pg_stat_activity")]
            missing = [w for w in self.spec.background_workers if w not in seen]
            return True if not missing else None

        if waits.poll(all_there, timeout, interval=2):
            return []
        return [
            cluster_finding(
                "cnpg.workers",
                w,
                f"background worker {w!r} not in pg_stat_activity after {timeout:.0f}s (seen: {', '.join(seen)}; "
                "raise EXTHARNESS_CNPG_WORKER_TIMEOUT)",
            )
            for w in missing
        ]

    # -- diagnostics -------------------------------------------------------------------
    def collect_diagnostics(
        self, folder: Path, operator_namespace: str = "cnpg-system", extra: Mapping[str, Any] | None = None
    ) -> Diagnostics:
        """Write everything a human needs to see why it failed; never raises."""
        from kubernetes import client

        folder.mkdir(parents=True, exist_ok=True)
        core = client.CoreV1Api(self.api_client)
        files: list[Path] = []
        lines: list[str] = [f"namespace {self.namespace}"]

        def write(name: str, text: str) -> None:
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            files.append(path)

        def attempt(what: str, fn: Any) -> Any:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the real failure
                lines.append(f"{what}: could not read ({type(exc).__name__}: {str(exc)[:200]})")
                return None

        if extra:
            write("detection.json", json.dumps(extra, indent=2, default=str) + "\n")
        cluster = attempt("cluster", self.cluster)
        if cluster is not None:
            write("cluster.json", json.dumps(cluster, indent=2) + "\n")
            lines.append(f"Cluster {self.spec.cluster_name}: {cluster_health(cluster)[1]}")
        database = attempt("database", self.database)
        if database is not None:
            write("database.json", json.dumps(database, indent=2) + "\n")
            lines.append(f"Database: {database_state(database, [self.spec.extension])[1]}")
        events = attempt("events", lambda: core.list_namespaced_event(self.namespace).items) or []
        event_lines = [
            f"{e.last_timestamp or e.event_time or ''} {e.type} {e.reason} "
            f"{e.involved_object.kind}/{e.involved_object.name}: {e.message}"
            for e in sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or ""))
        ]
        write("events.txt", "\n".join(event_lines) + "\n")
        lines += [f"event: {line}" for line in event_lines if " Warning " in f" {line} "][-10:]
        for pod in attempt("pods", lambda: core.list_namespaced_pod(self.namespace).items) or []:
            data = self.api_client.sanitize_for_serialization(pod)
            name = pod.metadata.name
            pod_events = [line for line in event_lines if f"Pod/{name}:" in line]
            write(f"pods/{name}.txt", describe_pod(data, pod_events))
            failure = pod_failure(data)
            lines.append(f"pod {name}: {(data.get('status') or {}).get('phase')}" + (f"; {failure}" if failure else ""))
            for container in [*(pod.spec.init_containers or []), *pod.spec.containers]:
                log = attempt(
                    f"log {name}/{container.name}",
                    lambda c=container, n=name: core.read_namespaced_pod_log(
                        n, self.namespace, container=c.name, tail_lines=2000
                    ),
                )
                if log:
                    write(f"logs/{name}_{container.name}.log", log)
                    tail = [x for x in log.splitlines() if re.search(r"(?i)error|fatal|panic", x)][-5:]
                    lines += [f"log {name}/{container.name}: {x[:300]}" for x in tail]
        for pod in attempt("operator pods", lambda: core.list_namespaced_pod(operator_namespace).items) or []:
            log = attempt(
                "operator log",
                lambda p=pod: core.read_namespaced_pod_log(p.metadata.name, operator_namespace, tail_lines=2000),
            )
            if log:
                write(f"operator/{pod.metadata.name}.log", log)
        lines.append(f"artifacts: {folder}")
        summary = "\n".join(lines)
        write("SUMMARY.txt", summary + "\n")
        return Diagnostics(folder, summary, files)


def describe_pod(pod: Mapping[str, Any], events: Sequence[str] = ()) -> str:
    """A ``kubectl describe pod``-like text: images, volumes, mounts, status, events."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    out = [
        f"Name: {meta.get('name')}",
        f"Namespace: {meta.get('namespace')}",
        f"Node: {spec.get('nodeName')}",
        f"Phase: {status.get('phase')}",
        "Volumes:",
    ]
    for volume in spec.get("volumes") or []:
        source = next((k for k in volume if k != "name"), "?")
        detail = volume.get("image", {}).get("reference") if source == "image" else ""
        out.append(f"  {volume.get('name')}: {source} {detail}".rstrip())
    for container in spec.get("containers") or []:
        out.append(f"Container {container.get('name')}: image {container.get('image')}")
        for mount in container.get("volumeMounts") or []:
            out.append(
                f"  mount {mount.get('mountPath')} <- {mount.get('name')}" + (" (ro)" if mount.get("readOnly") else "")
            )
    out.append("Conditions:")
    for condition in status.get("conditions") or []:
        out.append(
            f"  {condition.get('type')}={condition.get('status')} {condition.get('reason') or ''} "
            f"{condition.get('message') or ''}".rstrip()
        )
    out.append("Container statuses:")
    for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        which = next(iter(state), "?")
        out.append(
            f"  {cs.get('name')}: {which} {json.dumps(state.get(which) or {}, default=str)} "
            f"restarts={cs.get('restartCount')} image={cs.get('imageID') or cs.get('image')}"
        )
    out.append("Events:")
    out += [f"  {e}" for e in events] or ["  <none>"]
    return "\n".join(out) + "\n"
