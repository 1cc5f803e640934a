"""The code that talks to a cluster, driven through the official client against a loopback stand-in.

No Kubernetes here: ``FakeApiServer`` answers the few routes each test needs with real
response shapes, so what runs for real is the harness's use of the ``kubernetes`` client:
the requests it sends (paths, content types, server-side apply parameters) and how it reads
the answers (``/version``, ``/metrics`` as text, nodes, the probe pod, CNPG objects).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from cluster_setup import ClusterSetup
from fake_api import FakeApiServer

from extharness.errors import HarnessError
from extharness.kube import imagevolume as iv
from extharness.kube import operator
from extharness.kube.deploy import CnpgDeployment, render, spec_for
from extharness.kube.imagevolume import IMAGEVOLUME, ProbeResult
from extharness.pytest_plugin import FINDINGS_KEY, FindingRecorder

#: Objects recorded from the real CloudNativePG 1.29.1 operator (tests/kit/recording.py).
RECORDED = Path(__file__).parents[1] / "recorded"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


METRICS = '# TYPE kubernetes_feature_enabled gauge\nkubernetes_feature_enabled{name="ImageVolume",stage="BETA"} 1\n'


VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1",
    "gitCommit": "",
    "gitTreeState": "",
    "buildDate": "",
    "goVersion": "",
    "compiler": "",
    "platform": "linux/amd64",
}


def _node(runtime: str) -> dict:
    return {
        "metadata": {"name": "n"},
        "status": {
            "nodeInfo": {
                "containerRuntimeVersion": runtime,
                "architecture": "amd64",
                "bootID": "",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "kubeletVersion": "v1.33.1",
                "machineID": "",
                "operatingSystem": "linux",
                "osImage": "",
                "systemUUID": "",
            }
        },
    }


@pytest.fixture
def api() -> FakeApiServer:
    with FakeApiServer() as server:
        yield server


def test_static_signals_are_read_through_the_client(api: FakeApiServer) -> None:
    api.route("GET", "/version/?", (200, VERSION))
    api.route("GET", "/metrics", (200, METRICS))
    api.route(
        "GET",
        "/api/v1/nodes",
        (200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [_node("containerd://2.1.1")]}),
    )
    client = api.api_client()
    signals = iv.gather_signals(client, namespace="ns", extension_image=None, operand_image="op:18", extension="x")
    assert signals == iv.Signals("v1.33.1", 1.0, ("containerd://2.1.1",))
    assert iv.decide(signals).mode == IMAGEVOLUME


def test_forbidden_metrics_read_as_unknown(api: FakeApiServer) -> None:
    api.route("GET", "/metrics", (403, {"kind": "Status", "code": 403, "message": "forbidden"}))
    assert iv.gather_feature_metric(api.api_client()) is None


class _PodStore:
    """Just enough of the pods API for the probe: create, read, log, delete."""

    def __init__(self, api: FakeApiServer, *, drop_volume: bool = False, log: str = "", waiting: str | None = None):
        self.pods: dict[str, dict] = {}
        self.deleted: list[str] = []
        base = "/api/v1/namespaces/(?P<ns>[^/]+)/pods"

        def create(_m, body, _q):
            pod = copy.deepcopy(body)
            if drop_volume:  # what an API server with the gate off does
                pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if "image" not in v]
            if waiting:
                pod["status"] = {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "probe",
                            "ready": False,
                            "restartCount": 0,
                            "image": "op",
                            "imageID": "",
                            "state": {"waiting": {"reason": waiting, "message": 'failed to mkdir ""'}},
                        }
                    ],
                }
            else:
                pod["status"] = {"phase": "Succeeded" if "found" in log else "Failed"}
            self.pods[pod["metadata"]["name"]] = pod
            return 201, pod

        api.route("POST", base, create)
        api.route("GET", base + "/(?P<name>[^/]+)", lambda m, _b, _q: (200, self.pods[m["name"]]))
        api.route("GET", base + "/(?P<name>[^/]+)/log", (200, log))
        api.route(
            "DELETE",
            base + "/(?P<name>[^/]+)",
            lambda m, _b, _q: (self.deleted.append(m["name"]), (200, self.pods[m["name"]]))[1],
        )


def _probe(api: FakeApiServer) -> iv.ProbeOutcome:
    return iv.run_probe(
        api.api_client(),
        namespace="ns",
        extension_image="localhost/x-ext:1",
        operand_image="op:18",
        extension="x",
        timeout=5,
        poll=0.05,
    )


def test_probe_finds_the_control_file_and_deletes_its_pod(api: FakeApiServer) -> None:
    store = _PodStore(api, log="EXTHARNESS_PROBE=found /ext/share/extension/x.control\n")
    outcome = _probe(api)
    assert outcome.result is ProbeResult.MOUNTED_AND_FOUND
    created = next(body for method, _p, body in api.requests if method == "POST")
    assert created["spec"]["volumes"][0]["image"]["reference"] == "localhost/x-ext:1"
    assert store.deleted == list(store.pods)


def test_probe_notices_the_api_server_dropping_the_image_volume(api: FakeApiServer) -> None:
    store = _PodStore(api, drop_volume=True)
    assert _probe(api).result is ProbeResult.VOLUME_DROPPED
    assert store.deleted


def test_probe_reports_create_container_error(api: FakeApiServer) -> None:
    _PodStore(api, waiting="CreateContainerError")
    outcome = _probe(api)
    assert outcome.result is ProbeResult.CREATE_CONTAINER_ERROR and "mkdir" in outcome.detail


def test_probe_reports_an_empty_mount(api: FakeApiServer) -> None:
    _PodStore(api, log="EXTHARNESS_PROBE=empty\n")
    assert _probe(api).result is ProbeResult.EMPTY_MOUNT


# -- the operator ---------------------------------------------------------------------------------------
MANIFEST = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: cnpg-manager, namespace: cnpg-system}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusters.postgresql.cnpg.io}
spec: {group: postgresql.cnpg.io}
---
apiVersion: v1
kind: Namespace
metadata: {name: cnpg-system}
"""


def test_release_manifest_url_and_order() -> None:
    assert operator.release_manifest_url("1.28.0") == (
        "https://raw.githubusercontent.com/cloudnative-pg/cloudnative-pg/release-1.28/releases/cnpg-1.28.0.yaml"
    )
    assert [d["kind"] for d in operator.load_manifest(MANIFEST)] == [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
    ]
    with pytest.raises(HarnessError, match="1.27"):
        operator.release_manifest_url("1.25.1")
    with pytest.raises(HarnessError, match="expected a release like 1.28.0"):
        operator.release_manifest_url("latest")


def test_a_cached_manifest_is_used_without_downloading(tmp_path: Path) -> None:
    cached = tmp_path / "cnpg" / "cnpg-1.28.0.yaml"
    cached.parent.mkdir()
    cached.write_text(MANIFEST)
    assert len(operator.fetch_manifest("1.28.0", tmp_path)) == 3


def test_operator_version_and_availability_from_objects() -> None:
    assert operator.version_from_image("ghcr.io/cloudnative-pg/cloudnative-pg:1.28.1") == "1.28.1"
    assert (
        operator.availability_problem(
            {"spec": {"replicas": 1}, "status": {"conditions": [{"type": "Available", "status": "True"}]}}
        )
        is None
    )
    problem = operator.availability_problem(
        {
            "spec": {"replicas": 1},
            "status": {
                "conditions": [
                    {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "no"}
                ]
            },
        }
    )
    assert "0/1 replicas available" in problem and "MinimumReplicasUnavailable" in problem


def test_objects_are_server_side_applied(api: FakeApiServer) -> None:
    api.route("GET", "/version/?", (200, VERSION))
    api.route("GET", "/api", (200, {"kind": "APIVersions", "versions": ["v1"]}))
    api.route(
        "GET",
        "/apis",
        (
            200,
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": "apiextensions.k8s.io",
                        "versions": [{"groupVersion": "apiextensions.k8s.io/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": "apiextensions.k8s.io/v1", "version": "v1"},
                    }
                ],
            },
        ),
    )
    api.route(
        "GET",
        "/api/v1",
        (
            200,
            {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["create", "get", "patch"],
                    },
                    {
                        "name": "serviceaccounts",
                        "singularName": "serviceaccount",
                        "namespaced": True,
                        "kind": "ServiceAccount",
                        "verbs": ["create", "get", "patch"],
                    },
                ],
            },
        ),
    )
    api.route(
        "GET",
        "/apis/apiextensions.k8s.io/v1",
        (
            200,
            {
                "kind": "APIResourceList",
                "groupVersion": "apiextensions.k8s.io/v1",
                "resources": [
                    {
                        "name": "customresourcedefinitions",
                        "singularName": "customresourcedefinition",
                        "namespaced": False,
                        "kind": "CustomResourceDefinition",
                        "verbs": ["create", "get", "patch"],
                    }
                ],
            },
        ),
    )
    api.route("PATCH", "/.*", lambda _m, body, _q: (200, body))
    operator.apply_objects(api.api_client(), operator.load_manifest(MANIFEST))
    patches = [(path, body) for method, path, body in api.requests if method == "PATCH"]
    assert [p.split("?")[0] for p, _ in patches] == [
        "/api/v1/namespaces/cnpg-system",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.postgresql.cnpg.io",
        "/api/v1/namespaces/cnpg-system/serviceaccounts/cnpg-manager",
    ]
    assert all("fieldManager=extharness" in p and "force=true" in p for p, _ in patches)
    types = [t for (method, _p, _b), t in zip(api.requests, api.content_types) if method == "PATCH"]
    assert types == ["application/apply-patch+yaml"] * 3


# -- a deployment's objects ------------------------------------------------------------------------------
def test_deployment_creates_cluster_then_database_and_waits(api: FakeApiServer) -> None:
    objects: dict[str, dict] = {}
    base = "/apis/postgresql.cnpg.io/v1/namespaces/(?P<ns>[^/]+)/(?P<plural>clusters|databases)"

    def create(m, body, _q):
        objects[m["plural"]] = body
        return 201, body

    healthy = recorded("cnpg-cluster-healthy")["status"]
    applied = recorded("cnpg-database-applied")["status"]  # recorded for hstore: the name is ours here
    applied["extensions"] = [{**e, "name": "pg_ticker"} for e in applied["extensions"]]

    def get(m, _b, _q):
        doc = copy.deepcopy(objects[m["plural"]])
        doc["metadata"]["generation"] = 1  # the API server sets it on create
        doc["status"] = healthy if m["plural"] == "clusters" else applied
        return 200, doc

    api.route("POST", "/api/v1/namespaces", lambda _m, body, _q: (201, body))
    api.route("POST", base, create)
    api.route("GET", base + "/[^/]+", get)
    api.route(
        "GET",
        "/api/v1/namespaces/[^/]+/pods",
        (200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}),
    )
    api.route("DELETE", "/api/v1/namespaces/[^/]+", (200, {"kind": "Status", "status": "Success"}))
    spec = spec_for(IMAGEVOLUME, extension="pg_ticker", operand_image="op:18", extension_image="x:1")
    with CnpgDeployment(api.api_client(), spec, namespace="extharness-t") as deployment:
        assert "phase 'Cluster in healthy state'" in deployment.wait_healthy(timeout=5, poll=0.05)
        assert deployment.wait_database(timeout=5, poll=0.05) == "applied: pg_ticker"
        assert deployment.primary() == healthy["currentPrimary"]
    posts = [path for method, path, _ in api.requests if method == "POST"]
    assert posts == [
        "/api/v1/namespaces",
        "/apis/postgresql.cnpg.io/v1/namespaces/extharness-t/clusters",
        "/apis/postgresql.cnpg.io/v1/namespaces/extharness-t/databases",
    ]
    assert objects["clusters"] == render(spec, "extharness-t")[0]
    assert api.requests[-1][0] == "DELETE" and api.requests[-1][1].startswith("/api/v1/namespaces/extharness-t?")


def test_a_refused_cluster_reports_cnpgs_words_and_cleans_up(api: FakeApiServer) -> None:
    message = (
        'admission webhook "vcluster.cnpg.io" denied the request: spec.postgresql.parameters.'
        'shared_preload_libraries: Invalid value: "x": Can\'t set fixed configuration parameter'
    )
    api.route("POST", "/api/v1/namespaces", lambda _m, body, _q: (201, body))
    api.route(
        "POST",
        "/apis/postgresql.cnpg.io/v1/namespaces/[^/]+/clusters",
        (422, {"kind": "Status", "status": "Failure", "code": 422, "message": message}),
    )
    api.route("DELETE", "/api/v1/namespaces/[^/]+", (200, {"kind": "Status", "status": "Success"}))
    spec = spec_for(IMAGEVOLUME, extension="x", operand_image="op:18", extension_image="x:1")
    with pytest.raises(HarnessError, match="Can't set fixed configuration parameter"):
        with CnpgDeployment(api.api_client(), spec, namespace="extharness-r"):
            pass
    assert api.requests[-1][0] == "DELETE" and api.requests[-1][1].startswith("/api/v1/namespaces/extharness-r?")


def test_diagnostics_gather_status_events_pods_and_logs(api: FakeApiServer, tmp_path: Path) -> None:
    spec = spec_for(IMAGEVOLUME, extension="pg_ticker", operand_image="op:18", extension_image="x:1")
    cluster, database = render(spec, "extharness-d")
    cluster["status"] = {
        "phase": "Setting up primary",
        "readyInstances": 0,
        "conditions": [{"type": "Ready", "status": "False", "message": "waiting"}],
    }
    database["status"] = recorded("cnpg-database-failed")["status"]
    pod = recorded("cnpg-initdb-pod-pull-error")  # the real initdb pod of an unpullable extension image
    pod["metadata"].update(name="extharness-1-initdb-abc", namespace="extharness-d")
    event = {
        "metadata": {"name": "e1", "namespace": "extharness-d"},
        "type": "Warning",
        "reason": "Failed",
        "message": 'Error: failed to mkdir ""',
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "involvedObject": {"kind": "Pod", "name": "extharness-1-initdb-abc"},
    }
    base = "/apis/postgresql.cnpg.io/v1/namespaces/extharness-d"
    api.route("GET", base + "/clusters/extharness", (200, cluster))
    api.route("GET", base + "/databases/extharness-app", (200, database))
    api.route(
        "GET",
        "/api/v1/namespaces/extharness-d/events",
        (200, {"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": [event]}),
    )
    api.route(
        "GET",
        "/api/v1/namespaces/extharness-d/pods",
        (200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]}),
    )
    api.route(
        "GET",
        "/api/v1/namespaces/extharness-d/pods/[^/]+/log",
        (400, {"kind": "Status", "code": 400, "message": "container is waiting"}),
    )
    operator_pod = {**pod, "metadata": {"name": "cnpg-controller-manager-1", "namespace": "cnpg-system"}}
    api.route(
        "GET",
        "/api/v1/namespaces/cnpg-system/pods",
        (200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [operator_pod]}),
    )
    api.route(
        "GET", "/api/v1/namespaces/cnpg-system/pods/[^/]+/log", (200, '{"level":"error","msg":"reconcile failed"}\n')
    )
    deployment = CnpgDeployment(api.api_client(), spec, namespace="extharness-d")
    diagnostics = deployment.collect_diagnostics(tmp_path / "diag", extra={"mode": "imagevolume"})
    names = {p.relative_to(tmp_path / "diag").as_posix() for p in diagnostics.files}
    assert {
        "detection.json",
        "cluster.json",
        "database.json",
        "events.txt",
        "pods/extharness-1-initdb-abc.txt",
        "operator/cnpg-controller-manager-1.log",
        "SUMMARY.txt",
    } <= names
    assert "phase 'Setting up primary'" in diagnostics.summary
    assert "ImagePullBackOff" in diagnostics.summary or "ErrImagePull" in diagnostics.summary
    assert "extharness_no_such_function" in diagnostics.summary  # CNPG's message from the Database
    assert "Warning Failed Pod/extharness-1-initdb-abc" in diagnostics.summary
    assert "could not read" in diagnostics.summary  # the waiting container's log, said, not raised
    pulled = next(v["image"]["reference"] for v in pod["spec"]["volumes"] if v["name"] == "ext-pg-ticker")
    assert f"ext-pg-ticker: image {pulled}" in (tmp_path / "diag/pods/extharness-1-initdb-abc.txt").read_text()


def test_a_refused_database_fails_the_first_test_with_its_finding_and_skips_the_next(api: FakeApiServer) -> None:
    """``cluster_setup``: the Cluster is healthy, the Database is refused (the real operator's
    failure shape); the first test fails naming ``cnpg.database.applied``, the next skips naming it."""
    spec = spec_for(IMAGEVOLUME, extension="pg_ticker", operand_image="op:18", extension_image="x:1")
    cluster, database = render(spec, "extharness-s")
    cluster["status"] = recorded("cnpg-cluster-healthy")["status"]
    database["status"] = recorded("cnpg-database-failed")["status"]
    base = "/apis/postgresql.cnpg.io/v1/namespaces/extharness-s"
    api.route("GET", base + "/clusters/extharness", (200, cluster))
    api.route("GET", base + "/databases/extharness-app", (200, database))
    setup = ClusterSetup(CnpgDeployment(api.api_client(), spec, namespace="extharness-s"))
    first, second = (SimpleNamespace(nodeid=f"test_cluster.py::{n}", user_properties=[]) for n in ("a", "b"))

    assert "phase 'Cluster in healthy state'" in setup.healthy(FindingRecorder(first))  # type: ignore[arg-type]
    with pytest.raises(pytest.fail.Exception) as failed:
        setup.ready(FindingRecorder(first))  # type: ignore[arg-type]
    assert str(failed.value).startswith("cnpg.database.applied error: Database/extharness-app: Database extharness-app")
    assert "extharness_no_such_function" in str(failed.value)  # PostgreSQL's words, through CNPG's status
    (recorded_findings,) = [value for key, value in first.user_properties if key == FINDINGS_KEY]
    assert [(f["rule"], f["severity"], f["path"]) for f in recorded_findings] == [
        ("cnpg.database.applied", "error", "Database/extharness-app")
    ]
    with pytest.raises(pytest.skip.Exception, match=r"cnpg.database.applied \(reported once, by test_cluster.py::a\)"):
        setup.ready(FindingRecorder(second))  # type: ignore[arg-type]
    assert second.user_properties == []
