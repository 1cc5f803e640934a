"""Can this cluster mount an extension image? Signals, a pure decision, and how to gather them.

Missing ImageVolume support fails silently or oddly (domain notes, section 3): with the gate
off in the API server the image volume and its mount are dropped from the pod; an old runtime
gives ``CreateContainerError``; some runtimes mount an empty directory. So the harness records
every signal it can read (API server version, the ``kubernetes_feature_enabled`` metric, each
node's container runtime) and runs a probe pod that mounts the extension image and tests for
``share/extension/<ext>.control``: the probe is the final word. ``decide`` turns the signals
into ``imagevolume`` or ``fallback-composite`` with a reason; it is pure and property-tested.
The ``gather_*`` functions at the bottom talk to a real cluster through the official client.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.version import InvalidVersion, Version

from extharness.errors import HarnessError
from extharness.kube import manifests
from extharness.runtime import waits
from extharness.runtime.settings import limit_of

IMAGEVOLUME = "imagevolume"
FALLBACK = "fallback-composite"
MODES = ("auto", "imagevolume", "fallback")

MIN_SERVER = (1, 33)  # beta: CNPG's documented minimum (gate must be on for 1.33/1.34)
DEFAULT_ON = (1, 35)  # on by default from 1.35 (GA in 1.36)
MIN_CONTAINERD = Version("2.1.0")
MIN_CRIO = Version("1.31")
#: Seconds the probe pod may take to give a verdict (then the probe counts as not run).


class ImageVolumeUnsupported(HarnessError):
    """``--cnpg-mode imagevolume`` on a cluster that cannot mount image volumes."""


class ProbeResult(enum.Enum):
    MOUNTED_AND_FOUND = "mounted-and-found"  # the control file is there: image volumes work
    CONTROL_MISSING = "control-missing"  # mounted with files, but not share/extension/<ext>.control
    EMPTY_MOUNT = "empty-mount"  # the runtime made an empty directory instead of mounting
    VOLUME_DROPPED = "volume-dropped"  # the API server dropped the image volume (gate off)
    CREATE_CONTAINER_ERROR = "create-container-error"  # the runtime cannot mount images
    PULL_ERROR = "pull-error"  # the node could not get the extension image
    NOT_RUN = "not-run"


@dataclass(frozen=True)
class ProbeOutcome:
    result: ProbeResult = ProbeResult.NOT_RUN
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.result.value}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class RuntimeInfo:
    """A node's ``status.nodeInfo.containerRuntimeVersion``, e.g. ``containerd://2.1.3``."""

    raw: str

    @property
    def name(self) -> str:
        return self.raw.split("://", 1)[0].strip().lower() if "://" in self.raw else self.raw.strip().lower()

    @property
    def version(self) -> Version | None:
        text = self.raw.split("://", 1)[-1]
        match = re.match(r"v?(\d+(?:\.\d+){0,2})", text.strip())
        if not match:
            return None
        try:
            return Version(match.group(1))
        except InvalidVersion:
            return None

    def support(self) -> tuple[bool | None, str]:
        """(supports image volumes: True/False/None for unknown, why)."""
        name, version = self.name, self.version
        if name == "containerd":
            if version is None:
                return None, f"{self.raw}: containerd version unreadable"
            if version >= MIN_CONTAINERD:
                return True, f"{self.raw} >= containerd {MIN_CONTAINERD}"
            return False, f"{self.raw}: containerd < {MIN_CONTAINERD} cannot mount image volumes"
        if name in ("cri-o", "crio"):
            if version is None:
                return None, f"{self.raw}: CRI-O version unreadable"
            if version >= MIN_CRIO:
                return True, f"{self.raw} >= CRI-O {MIN_CRIO}"
            return False, f"{self.raw}: CRI-O < {MIN_CRIO} cannot mount image volumes"
        if name == "docker":
            return False, f"{self.raw}: cri-dockerd has no image volume support"
        return None, f"{self.raw}: unknown runtime"


def parse_server_version(text: str | None) -> tuple[int, int, int] | None:
    """``v1.33.1`` / ``v1.34.0-gke.1`` / ``1.35`` -> (1, 33, 1)."""
    if not text:
        return None
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class Signals:
    """Everything the harness learned about ImageVolume support on one cluster."""

    server_version: str | None = None  # /version gitVersion
    feature_metric: float | None = None  # kubernetes_feature_enabled{name="ImageVolume"} or None
    node_runtimes: tuple[str, ...] = ()  # containerRuntimeVersion of every node
    probe: ProbeOutcome = field(default_factory=ProbeOutcome)

    def as_dict(self) -> dict[str, Any]:
        return {
            "server_version": self.server_version,
            "feature_metric_ImageVolume": self.feature_metric,
            "node_runtimes": list(self.node_runtimes),
            "probe": self.probe.result.value,
            "probe_detail": self.probe.detail,
        }

    def summary(self) -> str:
        metric = "unreadable" if self.feature_metric is None else f"{self.feature_metric:g}"
        runtimes = ", ".join(self.node_runtimes) or "unknown"
        return (
            f"API server {self.server_version or 'unknown'}; "
            f'kubernetes_feature_enabled{{name="ImageVolume"}} {metric}; '
            f"runtime {runtimes}; probe {self.probe}"
        )


@dataclass(frozen=True)
class Decision:
    mode: str  # IMAGEVOLUME or FALLBACK
    reason: str
    #: What the probe found wrong with the extension image itself (no control file, cannot be
    #: pulled): no path can deploy it, so the tier stops before it makes a Cluster.
    image_problem: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.mode}: {self.reason}"


def static_support(signals: Signals) -> tuple[bool | None, list[str]]:
    """What version, metric and runtimes say, before the probe: (True/False/None, reasons)."""
    reasons: list[str] = []
    verdicts: list[bool | None] = []
    version = parse_server_version(signals.server_version)
    if version is None:
        verdicts.append(None)
        reasons.append("API server version unknown")
    elif version[:2] < MIN_SERVER:
        verdicts.append(False)
        reasons.append(
            f"Kubernetes {signals.server_version} < {MIN_SERVER[0]}.{MIN_SERVER[1]}: CNPG's image volume "
            "extensions need ImageVolume beta (1.33+)"
        )
    elif version[:2] < DEFAULT_ON:
        if signals.feature_metric is None:
            verdicts.append(None)
            reasons.append(
                f"Kubernetes {signals.server_version} has ImageVolume off by default and the "
                "feature metric is unreadable"
            )
        elif signals.feature_metric >= 1:
            verdicts.append(True)
            reasons.append(f"Kubernetes {signals.server_version} with the ImageVolume gate on")
        else:
            verdicts.append(False)
            reasons.append(
                f"Kubernetes {signals.server_version} with the ImageVolume gate off (enable "
                "featureGates: {ImageVolume: true} on the API server and kubelet)"
            )
    else:
        if signals.feature_metric is not None and signals.feature_metric < 1:
            verdicts.append(False)
            reasons.append(f"Kubernetes {signals.server_version} with the ImageVolume gate turned off")
        else:
            verdicts.append(True)
            reasons.append(f"Kubernetes {signals.server_version} has ImageVolume on by default")
    if not signals.node_runtimes:
        verdicts.append(None)
        reasons.append("node container runtime unknown")
    for raw in signals.node_runtimes:
        ok, why = RuntimeInfo(raw).support()
        verdicts.append(ok)
        reasons.append(why)
    if False in verdicts:
        return False, [r for r, v in zip(reasons, verdicts) if v is False]
    if None in verdicts:
        return None, reasons
    return True, reasons


_PROBE_FAILURES = {
    ProbeResult.EMPTY_MOUNT: "the probe pod's image volume is an EMPTY directory (the runtime does not really "
    "mount images)",
    ProbeResult.VOLUME_DROPPED: "the API server dropped the probe pod's image volume (ImageVolume gate off in "
    "the API server)",
    ProbeResult.CREATE_CONTAINER_ERROR: "the probe pod failed with CreateContainerError (the runtime cannot "
    "mount image volumes)",
    ProbeResult.PULL_ERROR: "the node could not get the extension image for the probe's image volume",
}


def decide(signals: Signals, mode: str = "auto") -> Decision:
    """ImageVolume or the composite fallback, with the reason; the probe is the final word.

    ``mode``: ``auto`` decides from the signals, ``fallback`` always takes the composite path,
    ``imagevolume`` insists and raises ``ImageVolumeUnsupported`` when the signals say no.
    """
    if mode not in MODES:
        raise HarnessError(f"--cnpg-mode must be one of {', '.join(MODES)}, not {mode!r}")
    probe = signals.probe
    static, static_reasons = static_support(signals)
    if probe.result is ProbeResult.MOUNTED_AND_FOUND:
        supported: bool | None = True
        reason = f"the probe pod found the control file in the mounted extension image ({probe.detail or 'ok'})"
        if static is False:
            reason += "; although " + "; ".join(static_reasons)
    elif probe.result is ProbeResult.CONTROL_MISSING:
        # Image volumes work (the mount has files); the image itself lacks the control file.
        supported = True
        reason = (
            "image volumes work (the probe's mount has files), but share/extension/<ext>.control is not in "
            f"the extension image: the deployment cannot CREATE EXTENSION ({probe.detail}); run -m layout"
        )
    elif probe.result in _PROBE_FAILURES:
        supported = False
        reason = _PROBE_FAILURES[probe.result] + (f": {probe.detail}" if probe.detail else "")
        if static_reasons:
            reason += "; signals: " + "; ".join(static_reasons)
    else:
        supported = static
        if static is True:
            reason = "; ".join(static_reasons) + " (probe not run)"
        elif static is False:
            reason = "; ".join(static_reasons)
        else:
            reason = "cannot confirm ImageVolume support without a probe: " + "; ".join(static_reasons)
    image_problem = None
    if probe.result is ProbeResult.CONTROL_MISSING:
        image_problem = f"the probe pod mounted the extension image, but its control file is missing ({probe.detail})"
    elif probe.result is ProbeResult.PULL_ERROR:
        image_problem = f"the node cannot get the extension image: {probe.detail or 'pull error'}"
    if mode == "fallback":
        return Decision(FALLBACK, f"forced by --cnpg-mode fallback (ImageVolume: {reason})", image_problem)
    if supported is True:
        return Decision(IMAGEVOLUME, reason, image_problem)
    if mode == "imagevolume":
        raise ImageVolumeUnsupported(
            f"--cnpg-mode imagevolume, but this cluster cannot mount extension images: {reason}. "
            f"Signals: {signals.summary()}. Use a kind node v1.33/v1.34 with featureGates ImageVolume: true or "
            "v1.35+, containerd >= 2.1.0 or CRI-O >= 1.31, or --cnpg-mode auto to fall back to a composite image"
        )
    return Decision(FALLBACK, reason, image_problem)


# -- reading signals back (pure) -----------------------------------------------------------
_METRIC_LINE = re.compile(r"^kubernetes_feature_enabled\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")


def parse_feature_metric(text: str, feature: str = "ImageVolume") -> float | None:
    """The value of ``kubernetes_feature_enabled{name="<feature>",...}`` in Prometheus text."""
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group("labels")))
        if labels.get("name") == feature:
            try:
                return float(match.group("value"))
            except ValueError:
                return None
    return None


_WAITING_FAILURES = {
    "CreateContainerError": ProbeResult.CREATE_CONTAINER_ERROR,
    "CreateContainerConfigError": ProbeResult.CREATE_CONTAINER_ERROR,
    "RunContainerError": ProbeResult.CREATE_CONTAINER_ERROR,
    "ErrImagePull": ProbeResult.PULL_ERROR,
    "ImagePullBackOff": ProbeResult.PULL_ERROR,
    "ErrImageNeverPull": ProbeResult.PULL_ERROR,
    "InvalidImageName": ProbeResult.PULL_ERROR,
}


def has_image_volume(pod: Mapping[str, Any]) -> bool:
    """Whether the pod (as stored by the API server) still has an ``image`` volume."""
    return any(isinstance(v, Mapping) and v.get("image") for v in (pod.get("spec") or {}).get("volumes") or [])


def classify_probe(pod: Mapping[str, Any], log: str = "") -> ProbeOutcome | None:
    """Read a probe pod (API dict) and its log; None while it has not finished yet."""
    if not has_image_volume(pod):
        return ProbeOutcome(ProbeResult.VOLUME_DROPPED, "spec.volumes has no image volume after creation")
    for line in log.splitlines():
        if line.startswith(manifests.PROBE_MARKER):
            what, _, rest = line[len(manifests.PROBE_MARKER) :].partition(" ")
            if what == "found":
                return ProbeOutcome(ProbeResult.MOUNTED_AND_FOUND, rest.strip())
            if what == "empty":
                return ProbeOutcome(ProbeResult.EMPTY_MOUNT, "the mount point is empty")
            if what == "no-mount":
                return ProbeOutcome(ProbeResult.VOLUME_DROPPED, "the container has no mount at the probe path")
            if what == "control-missing":
                lines = log.splitlines()
                after = lines[lines.index(line) + 1 :] if line in lines else []
                listing = ", ".join(x.strip() for x in after[:7] if x.strip())
                missing = f"no {rest.strip()}; " if rest.strip() else ""
                return ProbeOutcome(ProbeResult.CONTROL_MISSING, f"{missing}the mount has: {listing}")
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        result = _WAITING_FAILURES.get(waiting.get("reason", ""))
        if result is not None:
            return ProbeOutcome(result, f"{waiting.get('reason')}: {waiting.get('message', '')}".strip(": "))
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated and not log.strip():
            return ProbeOutcome(
                ProbeResult.CREATE_CONTAINER_ERROR,
                f"terminated ({terminated.get('reason')}, exit {terminated.get('exitCode')}) without output",
            )
    if status.get("phase") in ("Succeeded", "Failed") and not log.strip():
        return ProbeOutcome(ProbeResult.CREATE_CONTAINER_ERROR, f"pod {status.get('phase')} without output")
    return None


# -- gathering from a real cluster (kubernetes client) -------------------------------------
def _finished(pod: Mapping[str, Any]) -> bool:
    """The probe has run: the pod's phase says so, or (earlier: a real kubelet reports the
    container's termination before the pod's phase) a container status does."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    return any((c.get("state") or {}).get("terminated") for c in status.get("containerStatuses") or [])


def raw_get(api_client: Any, path: str, timeout: float = 15) -> str:
    """GET a non-JSON API server path (``/metrics``) through the client's own auth and TLS."""
    method, url, headers, body, post = api_client.param_serialize(
        method="GET", resource_path=path, header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"]
    )
    response = api_client.call_api(
        method, url, header_params=headers, body=body, post_params=post, _request_timeout=timeout
    )
    response.read()
    data = response.data
    return data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else str(data)


def gather_server_version(api_client: Any) -> str | None:
    from kubernetes import client

    return client.VersionApi(api_client).get_code().git_version


def gather_feature_metric(api_client: Any) -> float | None:
    """None when ``/metrics`` cannot be read (RBAC, managed control planes)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return parse_feature_metric(raw_get(api_client, "/metrics"))
    except (ApiException, OSError, ValueError):
        return None


def gather_node_runtimes(api_client: Any) -> tuple[str, ...]:
    from kubernetes import client

    nodes = client.CoreV1Api(api_client).list_node().items
    return tuple(sorted({n.status.node_info.container_runtime_version for n in nodes if n.status.node_info}))


def run_probe(
    api_client: Any,
    *,
    namespace: str,
    extension_image: str,
    operand_image: str,
    extension: str,
    timeout: float | None = None,
    poll: float = 2,
) -> ProbeOutcome:
    """Create the probe pod, wait for its verdict, delete it."""
    timeout = limit_of("EXTHARNESS_IMAGEVOLUME_PROBE_TIMEOUT") if timeout is None else timeout
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    name = f"extharness-probe-{uuid.uuid4().hex[:8]}"
    body = manifests.render_probe_pod(
        name, extension_image=extension_image, operand_image=operand_image, extension=extension, namespace=namespace
    )
    try:
        created = api_client.sanitize_for_serialization(core.create_namespaced_pod(namespace, body))
    except ApiException as exc:
        # No verdict: the static signals decide (an old API server may refuse the image volume).
        return ProbeOutcome(
            ProbeResult.NOT_RUN, f"the API server refused the probe pod: {exc.status} {exc.reason}: {exc.body}"[:500]
        )
    try:
        if not has_image_volume(created):
            return ProbeOutcome(ProbeResult.VOLUME_DROPPED, "spec.volumes has no image volume after creation")
        phase = None

        def verdict() -> ProbeOutcome | None:
            nonlocal phase
            pod = api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
            phase = (pod.get("status") or {}).get("phase")
            log = ""
            if _finished(pod):
                try:
                    log = core.read_namespaced_pod_log(name, namespace, container="probe")
                except ApiException:
                    log = ""
            return classify_probe(pod, log)

        outcome = waits.poll(verdict, timeout, interval=poll)
        if outcome is not None:
            return outcome
        return ProbeOutcome(
            ProbeResult.NOT_RUN,
            f"no verdict within {timeout:g}s (pod phase {phase}; EXTHARNESS_IMAGEVOLUME_PROBE_TIMEOUT)",
        )
    finally:
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException:
            pass


def gather_signals(
    api_client: Any,
    *,
    namespace: str,
    extension_image: str | None,
    operand_image: str,
    extension: str,
    probe_timeout: float | None = None,
) -> Signals:
    """All signals from a real cluster; the probe runs only when there is an image to mount."""
    probe = ProbeOutcome()
    if extension_image:
        probe = run_probe(
            api_client,
            namespace=namespace,
            extension_image=extension_image,
            operand_image=operand_image,
            extension=extension,
            timeout=probe_timeout,
        )
    return Signals(
        server_version=gather_server_version(api_client),
        feature_metric=gather_feature_metric(api_client),
        node_runtimes=gather_node_runtimes(api_client),
        probe=probe,
    )


def signals_from_dict(data: Mapping[str, Any]) -> Signals:
    """Rebuild ``Signals`` from ``Signals.as_dict()`` (recorded reports, tests)."""
    return Signals(
        server_version=data.get("server_version"),
        feature_metric=data.get("feature_metric_ImageVolume"),
        node_runtimes=tuple(data.get("node_runtimes") or ()),
        probe=ProbeOutcome(ProbeResult(data.get("probe", "not-run")), data.get("probe_detail", "")),
    )
