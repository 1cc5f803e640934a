"""The CloudNativePG operator: install a release (or use the one found), wait until it serves.

The release manifest ``releases/cnpg-<version>.yaml`` of the ``release-<major.minor>``
branch is applied with **server-side apply** through the official client's
``DynamicClient.server_side_apply`` (field manager ``extharness``), which is what CNPG's
install docs ask for (``kubectl apply --server-side``): its CRDs are larger than the 256 KiB
``last-applied-configuration`` annotation client-side apply needs, and server-side apply is
idempotent, so re-running on a partial or older install converges instead of failing with
409 like ``utils.create_from_yaml`` would.

An operator that is already installed (the ``clusters.postgresql.cnpg.io`` CRD exists and a
Deployment in any namespace runs CNPG's manager: ``cnpg-controller-manager`` from the release
manifest, ``cnpg-cloudnative-pg`` from Helm) is used as found, never installed over. Either way the harness waits
for the deployment to be Available *and* for the webhook service to have ready endpoints
(a Cluster created before that fails with "failed calling webhook").
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.kube.manifests import MANAGED_BY_SELECTOR
from extharness.runtime import waits
from extharness.runtime.settings import limit_of

NAMESPACE = "cnpg-system"
DEPLOYMENT = "cnpg-controller-manager"
WEBHOOK_SERVICE = "cnpg-webhook-service"
CLUSTER_CRD = "clusters.postgresql.cnpg.io"
FIELD_MANAGER = "extharness"
RELEASE_URL = (
    "https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-{minor}/releases/cnpg-{version}.yaml"
)

#: Kinds that must exist before the others can be applied.
_FIRST = {"Namespace": 0, "CustomResourceDefinition": 1}


def parse_version(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:-rc\d+)?", version.strip())
    if not match:
        raise HarnessError(f"--cnpg-version {version!r}: expected a release like 1.28.0")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def release_manifest_url(version: str) -> str:
    major, minor, _ = parse_version(version)
    if (major, minor) < (1, 27):
        raise HarnessError(
            f"--cnpg-version {version}: image volume extensions need CloudNativePG 1.27+ (the harness targets 1.28+)"
        )
    return RELEASE_URL.format(minor=f"{major}.{minor}", version=version.lstrip("v"))


def load_manifest(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document manifest, namespaces and CRDs first, order otherwise kept."""
    import yaml

    docs = [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]
    return sorted(docs, key=lambda d: _FIRST.get(d["kind"], 2))  # sorted() is stable


def fetch_manifest(version: str, cache_dir: Path) -> list[dict[str, Any]]:
    """The release manifest, downloaded once into ``cache_dir`` (it never changes for a release)."""
    url = release_manifest_url(version)
    cached = cache_dir / "cnpg" / f"cnpg-{version.lstrip('v')}.yaml"
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=limit_of("EXTHARNESS_FETCH_TIMEOUT")) as response:  # noqa: S310 (fixed https URL)
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise EnvironmentMissing(
                f"cannot download the CloudNativePG {version} manifest from {url}: {exc} "
                f"(put it at {cached} to install offline)"
            ) from None
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, cached)
    return load_manifest(cached.read_text())


def version_from_image(image: str) -> str | None:
    """``ghcr.io/cloudnative-pg/cloudnative-pg:1.28.0`` -> ``1.28.0``."""
    match = re.search(r":v?(\d+\.\d+\.\d+(?:-rc\d+)?)(?:@|$)", image)
    return match.group(1) if match else None


def availability_problem(deployment: dict[str, Any]) -> str | None:
    """None when the deployment's ``Available`` condition is True; else what its status says."""
    status = deployment.get("status") or {}
    conditions = status.get("conditions") or []
    for condition in conditions:
        if condition.get("type") == "Available" and condition.get("status") == "True":
            return None
    described = (
        "; ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})" for c in conditions)
        or "no conditions yet"
    )
    return (
        f"{status.get('availableReplicas') or 0}/{(deployment.get('spec') or {}).get('replicas', 1)} "
        f"replicas available; {described}"
    )


@dataclass(frozen=True)
class OperatorInfo:
    version: str | None
    installed_by_harness: bool
    image: str | None
    namespace: str = NAMESPACE
    deployment: str = DEPLOYMENT

    def __str__(self) -> str:
        how = "installed by the harness" if self.installed_by_harness else "found installed"
        where = f"{self.namespace}/{self.deployment}"
        return f"CloudNativePG {self.version or '?'} ({how}; {where}; {self.image or 'image unknown'})"


# -- the cluster side ----------------------------------------------------------------------
def is_operator_deployment(deployment: dict[str, Any]) -> bool:
    """A Deployment that runs CNPG's manager as the operator, whatever it is called: the
    release manifest's ``cnpg-controller-manager``, Helm's ``cnpg-cloudnative-pg``, or another
    name (its container runs ``/manager controller``, or it carries CNPG's name label)."""
    labels = (deployment.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/name") == "cloudnative-pg":
        return True
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if len(command) >= 2 and command[0].endswith("/manager") and command[1] == "controller":
            return True
    return False


def _operator_deployments(api_client: Any) -> list[dict[str, Any]]:
    from kubernetes import client

    listed = client.AppsV1Api(api_client).list_deployment_for_all_namespaces()
    found = [api_client.sanitize_for_serialization(d) for d in listed.items]
    return [d for d in found if is_operator_deployment(d)]


def _deployment(api_client: Any, namespace: str = NAMESPACE, name: str = DEPLOYMENT) -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        dep = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return api_client.sanitize_for_serialization(dep)


def find_installed(api_client: Any) -> OperatorInfo | None:
    """The operator already in the cluster (any install method, any namespace): the
    ``clusters.postgresql.cnpg.io`` CRD and a Deployment running CNPG's manager."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.ApiextensionsV1Api(api_client).read_custom_resource_definition(CLUSTER_CRD)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    deployments = _operator_deployments(api_client)
    if not deployments:
        raise HarnessError(
            f"the CloudNativePG CRDs ({CLUSTER_CRD}) are installed but no Deployment runs the operator: "
            "a broken or half-removed install; the harness will not install over it (remove it, or start the operator)"
        )
    dep = deployments[0]
    containers = dep["spec"]["template"]["spec"].get("containers") or []
    image = containers[0].get("image") if containers else None
    meta = dep["metadata"]
    return OperatorInfo(version_from_image(image or ""), False, image, meta["namespace"], meta["name"])


def terminating_crds(api_client: Any) -> list[str]:
    """Names of ``postgresql.cnpg.io`` CRDs being deleted (a deletion timestamp, still there)."""
    from kubernetes import client

    return sorted(
        crd.metadata.name
        for crd in client.ApiextensionsV1Api(api_client).list_custom_resource_definition().items
        if crd.spec.group == "postgresql.cnpg.io" and crd.metadata.deletion_timestamp is not None
    )


def webhook_service(api_client: Any) -> tuple[str, str]:
    """(namespace, name) of the Service CNPG's mutating webhook for ``postgresql.cnpg.io`` calls;
    the release manifest's ``cnpg-system/cnpg-webhook-service`` when none is registered yet."""
    from kubernetes import client

    for config in client.AdmissionregistrationV1Api(api_client).list_mutating_webhook_configuration().items:
        for hook in config.webhooks or []:
            groups = {g for rule in hook.rules or [] for g in rule.api_groups or []}
            service = hook.client_config.service if hook.client_config else None
            if "postgresql.cnpg.io" in groups and service is not None:
                return service.namespace, service.name
    return NAMESPACE, WEBHOOK_SERVICE


def apply_objects(api_client: Any, objects: Iterable[dict[str, Any]]) -> None:
    """Server-side apply every object (what ``kubectl apply --server-side --force-conflicts`` does)."""
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    dyn = dynamic.DynamicClient(api_client)
    crds_applied = False
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition" and crds_applied:
            dyn.resources.invalidate_cache()  # discover the kinds the CRDs just added
            crds_applied = False
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            dyn.server_side_apply(
                resource,
                body=obj,
                namespace=obj.get("metadata", {}).get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except ApiException as exc:
            raise HarnessError(
                f"applying {obj['kind']}/{obj['metadata'].get('name')}: {exc.status} {exc.reason}: "
                f"{(exc.body or '')[:300]}"
            ) from None
        crds_applied = crds_applied or obj["kind"] == "CustomResourceDefinition"


def uninstall(api_client: Any, objects: Iterable[dict[str, Any]], timeout: float = 120) -> list[str]:
    """Delete what a manifest created (reverse order: CRDs and the namespace last); returns
    what could not be deleted. Only for an operator the harness installed itself."""
    from kubernetes import client, dynamic
    from kubernetes.client.exceptions import ApiException

    dyn = dynamic.DynamicClient(api_client)
    deadline = time.monotonic() + timeout
    # First the harness's namespaces being deleted: the operator removes the finalizers of their
    # Clusters' Databases; without it they, and so the CRDs, stay forever.
    core = client.CoreV1Api(api_client)
    terminating = [
        n.metadata.name
        for n in core.list_namespace(label_selector=MANAGED_BY_SELECTOR).items
        if n.status and n.status.phase == "Terminating"
    ]
    problems = [
        f"Namespace/{name}: still terminating after {timeout:.0f}s"
        for name in _wait_gone(terminating, core.read_namespace, timeout)
    ]
    objects_list = list(objects)
    for obj in reversed(objects_list):
        meta = obj.get("metadata") or {}
        try:
            resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            dyn.delete(resource, name=meta.get("name"), namespace=meta.get("namespace"),
                       body={"propagationPolicy": "Background"})  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                problems.append(f"{obj['kind']}/{meta.get('name')}: {exc.status} {exc.reason}")
    # Wait for the CRDs to go (until then the cluster is half-removed: CRD without operator) and
    # for the namespaces (objects applied into a Terminating namespace are deleted with it).
    deadline = max(deadline, time.monotonic() + timeout / 2)
    readers = {
        "CustomResourceDefinition": client.ApiextensionsV1Api(api_client).read_custom_resource_definition,
        "Namespace": client.CoreV1Api(api_client).read_namespace,
    }
    for kind, read in readers.items():
        names = [o["metadata"]["name"] for o in objects_list if o["kind"] == kind]
        left = _wait_gone(names, read, max(0.0, deadline - time.monotonic()))
        problems += [f"{kind}/{name}: still there after {timeout:.0f}s" for name in left]
    return problems


def _wait_gone(names: list[str], read: Callable[[str], object], timeout: float) -> list[str]:
    """Poll ``read(name)`` until each answers 404 or ``timeout`` runs out; returns the names still there."""
    from kubernetes.client.exceptions import ApiException

    def there(name: str) -> bool:
        try:
            read(name)
        except ApiException as exc:
            return exc.status != 404
        return True

    def all_gone() -> bool | None:
        nonlocal names
        names = [name for name in names if there(name)]
        return True if not names else None

    if names:
        waits.poll(all_gone, timeout, interval=1)
    return names


def wait_available(
    api_client: Any,
    timeout: float | None = None,
    poll: float = 3,
    namespace: str = NAMESPACE,
    name: str = DEPLOYMENT,
) -> None:
    """Wait until the operator deployment is Available and its webhook has ready endpoints."""
    timeout = limit_of("EXTHARNESS_CNPG_READY_TIMEOUT") if timeout is None else timeout
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from extharness.kube.deploy import pod_failure

    core = client.CoreV1Api(api_client)
    problem: str | None = "deployment not found"
    stuck: dict[str, int] = {}

    def available() -> bool | None:
        nonlocal problem
        dep = _deployment(api_client, namespace, name)
        problem = "deployment not found" if dep is None else availability_problem(dep)
        if problem is not None and dep is not None:
            # A manager pod that cannot start (image not found, crash loop) will not fix itself.
            selector = ",".join(
                f"{k}={v}" for k, v in ((dep["spec"].get("selector") or {}).get("matchLabels") or {}).items()
            )
            for pod in core.list_namespaced_pod(namespace, label_selector=selector or None).items:
                failure = pod_failure(api_client.sanitize_for_serialization(pod))
                if failure:
                    stuck[failure] = stuck.get(failure, 0) + 1
                    if stuck[failure] >= 3:
                        raise HarnessError(f"CloudNativePG operator ({namespace}/{name}) cannot start: {failure}")
        if problem is None:
            hook_ns, hook_name = webhook_service(api_client)
            try:
                endpoints = core.read_namespaced_endpoints(hook_name, hook_ns)
                ready = any(subset.addresses for subset in endpoints.subsets or [])
            except ApiException:
                ready = False
            if ready:
                return True
            problem = f"service {hook_ns}/{hook_name} has no ready endpoints yet"
        return None

    if waits.poll(available, timeout, interval=poll):
        return
    pods = []
    try:
        for pod in core.list_namespaced_pod(namespace).items:
            states = [
                f"{c.name}: {next((k for k, v in (c.state.to_dict() or {}).items() if v), '?')}"
                for c in pod.status.container_statuses or []
            ]
            pods.append(f"{pod.metadata.name} {pod.status.phase} [{', '.join(states)}]")
    except ApiException:
        pass
    raise HarnessError(
        f"CloudNativePG operator ({namespace}/{name}) not available after {timeout:.0f}s: {problem}; "
        f"pods: {'; '.join(pods) or 'none'} (raise EXTHARNESS_CNPG_READY_TIMEOUT, or "
        f"kubectl -n {namespace} describe deployment {name})"
    )


def release_objects(version: str, cache_dir: Path, manifest_file: Path | None = None) -> list[dict[str, Any]]:
    """The objects of the operator release: ``manifest_file``, else the downloaded manifest."""
    if manifest_file is None:
        return fetch_manifest(version, cache_dir)
    try:
        return load_manifest(Path(manifest_file).read_text())
    except OSError as exc:
        raise HarnessError(f"--cnpg-manifest {manifest_file}: {exc.strerror}") from None


def ensure_operator(
    api_client: Any,
    version: str,
    cache_dir: Path,
    timeout: float | None = None,
    manifest_file: Path | None = None,
    before_install: Callable[[], object] | None = None,
) -> OperatorInfo:
    """Use the installed operator, or install ``version`` (from ``manifest_file`` when given:
    air-gapped clusters, or the cluster kit's local build; ``before_install`` runs first, e.g.
    to load that build's image); then wait until it is available."""
    found = find_installed(api_client)
    if found is not None:
        wait_available(api_client, timeout, namespace=found.namespace, name=found.deployment)
        return found
    stuck = terminating_crds(api_client)
    if stuck:
        raise HarnessError(
            f"the CloudNativePG CRDs {', '.join(stuck)} are still being deleted (objects of a removed operator keep "
            "finalizers only the operator clears); the harness will not install over a half-removed operator: "
            "remove the finalizers of the CNPG objects left (kubectl get databases,clusters -A) or wait"
        )
    if before_install is not None:
        before_install()
    apply_objects(api_client, release_objects(version, cache_dir, manifest_file))
    wait_available(api_client, timeout)
    info = find_installed(api_client)
    if info is None:
        return OperatorInfo(version, True, None)
    return OperatorInfo(info.version, True, info.image, info.namespace, info.deployment)
