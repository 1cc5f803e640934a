"""The kube waits (Cluster health, Database, rolling update, workers, webhook warm-up, operator
availability and removal, the ImageVolume probe) against fake API objects: what each returns,
when it gives up at once, and the words of its time-out. No cluster."""

from __future__ import annotations

import time
from types import SimpleNamespace as NS

import pytest
from kubernetes.client.exceptions import ApiException

from extharness.errors import HarnessError
from extharness.kube import deploy, imagevolume, operator


def api_exc(status, body=""):
    exc = ApiException(status=status, reason="r")
    exc.body = body
    return exc


def fake_dep(**kw):
    d = deploy.CnpgDeployment.__new__(deploy.CnpgDeployment)
    d.spec = NS(
        cluster_name="c1", extension="ext", extension_name="ext", instances=1, background_workers=["w1"], mode="x"
    )
    d.database_doc = {"metadata": {"name": "db1"}}
    d.namespace = "ns"
    for k, v in kw.items():
        setattr(d, k, v)
    return d


def test_wait_healthy_returns_timeout_and_stuck(monkeypatch):
    answers = iter([(False, "1/2 ready"), (False, "1/2 ready"), (True, "healthy!")])
    monkeypatch.setattr(deploy, "cluster_health", lambda c: next(answers))
    d = fake_dep()
    d.cluster = lambda: {}
    d.pods = lambda: []
    assert d._wait_healthy(5, 0.01) == "healthy!"
    monkeypatch.setattr(deploy, "cluster_health", lambda c: (False, "0/1 ready"))
    with pytest.raises(
        HarnessError, match=r"Cluster c1 not healthy after 0s: 0/1 ready \(raise EXTHARNESS_CNPG_HEALTHY_TIMEOUT\)"
    ):
        d._wait_healthy(0.2, 0.01)
    monkeypatch.setattr(deploy, "pod_failure", lambda p: "ImagePullBackOff")
    d.pods = lambda: [{}]
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"Cluster c1 cannot start: ImagePullBackOff \(0/1 ready\)"):
        d._wait_healthy(30, 0.01)
    assert time.monotonic() - started < 5


def test_wait_database(monkeypatch):
    states = iter([(None, "pending"), (True, "applied")])
    monkeypatch.setattr(deploy, "database_state", lambda db, ex: next(states))
    d = fake_dep()
    d.database = lambda name=None: {}
    assert d.wait_database(5, 0.01) == "applied"
    monkeypatch.setattr(deploy, "database_state", lambda db, ex: (None, "pending"))
    with pytest.raises(HarnessError, match=r"Database db1 not applied after 0s: pending"):
        d.wait_database(0.1, 0.01)
    monkeypatch.setenv("EXTHARNESS_CNPG_DATABASE_RETRY", "0.2")
    monkeypatch.setattr(deploy, "database_state", lambda db, ex: (False, "bad ext"))
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"^Database db1: bad ext$"):
        d.wait_database(30, 0.01)
    assert 0.2 <= time.monotonic() - started < 5  # held through the retry grace, then reported at once


def test_wait_database_outlives_a_passing_failure(monkeypatch):
    """CNPG marks a Database failed when the instance is not up yet, then retries (the message
    recorded from a real 1.34 run); that failure must not be the answer."""
    passing = (
        'Database not applied: while detecting the database "app": while scanning if database "app" exists: '
        "failed to connect to `user=postgres database=postgres`: /controller/run/.s.PGSQL.5432 "
        "(/controller/run): dial error: dial unix /controller/run/.s.PGSQL.5432: connect: no such file or directory"
    )
    monkeypatch.setenv("EXTHARNESS_CNPG_DATABASE_RETRY", "0.3")
    states = iter([(None, "pending")] + [(False, passing)] * 5 + [(True, "applied")])
    monkeypatch.setattr(deploy, "database_state", lambda db, ex: next(states))
    d = fake_dep()
    d.database = lambda name=None: {}
    assert d.wait_database(5, 0.01) == "applied"
    # a failure whose message changes starts its clock again
    states = iter([(False, passing)] * 10 + [(False, "bad ext")] * 1000)
    started = time.monotonic()
    with pytest.raises(HarnessError, match=r"^Database db1: bad ext$"):
        d.wait_database(30, 0.02)
    assert time.monotonic() - started >= 0.3 + 10 * 0.02 * 0.9


def test_wait_workers():
    d = fake_dep()
    seen = iter([[["x"]], [["w1"]]])
    d.psql = lambda sql: next(seen)
    assert d.wait_workers(10) == []
    d.psql = lambda sql: [["x"]]
    problems = d.wait_workers(0)
    assert [(f.rule, f.severity, f.path, f.message) for f in problems] == [
        (
            "cnpg.workers",
            "error",
            "w1",
            "background worker 'w1' not in pg_stat_activity after 0s (seen: x; raise EXTHARNESS_CNPG_WORKER_TIMEOUT)",
        )
    ]


def test_create_retries_only_the_webhook(monkeypatch):
    d = fake_dep()
    calls = []

    class Custom:
        def __init__(self, errors):
            self.errors = list(errors)

        def create_namespaced_custom_object(self, *a):
            calls.append(a)
            if self.errors:
                raise self.errors.pop(0)

    monkeypatch.setattr(deploy, "WEBHOOK_WARMUP", 10)
    monkeypatch.setattr(deploy.waits.time, "sleep", lambda s: None)
    doc = {"kind": "Cluster", "metadata": {"name": "c1"}}
    d._create(Custom([api_exc(500, '{"message": "failed calling webhook x"}')]), "clusters", doc)
    assert len(calls) == 2
    with pytest.raises(HarnessError, match=r"^CloudNativePG refused Cluster/c1: bad spec$"):
        d._create(Custom([api_exc(422, '{"message": "bad spec"}')]), "clusters", doc)
    monkeypatch.setattr(deploy, "WEBHOOK_WARMUP", 0)
    with pytest.raises(HarnessError, match=r"^CloudNativePG refused Cluster/c1: failed calling webhook y$"):
        d._create(Custom([api_exc(500, '{"message": "failed calling webhook y"}')] * 5), "clusters", doc)


def test_operator_wait_gone():
    state = {"a": 2, "b": 0, "c": 99}

    def read(name):
        if state[name] <= 0:
            raise api_exc(404)
        state[name] -= 1

    assert operator._wait_gone(["a", "b"], read, 10) == []
    assert operator._wait_gone(["a", "c"], read, 1.5) == ["c"]
    assert operator._wait_gone([], read, 0) == []


def test_probe_verdict(monkeypatch):
    pods = iter([{"status": {"phase": "Pending"}}, {"status": {"phase": "Succeeded"}}])
    outcome = imagevolume.ProbeOutcome(imagevolume.ProbeResult.NOT_RUN, "done")

    class Core:
        def create_namespaced_pod(self, ns, body):
            return body

        def read_namespaced_pod(self, name, ns):
            return next(pods)

        def read_namespaced_pod_log(self, *a, **k):
            return "log"

        def delete_namespaced_pod(self, *a, **k):
            pass

    import kubernetes.client

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda api: Core())
    monkeypatch.setattr(imagevolume, "has_image_volume", lambda p: True)
    monkeypatch.setattr(imagevolume, "classify_probe", lambda pod, log: outcome if log else None)
    monkeypatch.setattr(imagevolume, "_finished", lambda pod: pod["status"]["phase"] == "Succeeded")
    monkeypatch.setattr(imagevolume.manifests, "render_probe_pod", lambda *a, **k: {})
    api = NS(sanitize_for_serialization=lambda x: x)
    kw = dict(namespace="n", extension_image="e", operand_image="o", extension="x")
    assert imagevolume.run_probe(api, timeout=5, poll=0.01, **kw) is outcome
    pods = iter([{"status": {"phase": "Pending"}}] * 1000)
    result = imagevolume.run_probe(api, timeout=0.1, poll=0.01, **kw)
    assert result.detail == "no verdict within 0.1s (pod phase Pending; EXTHARNESS_IMAGEVOLUME_PROBE_TIMEOUT)"


def test_wait_available(monkeypatch):
    import kubernetes.client

    deps = iter([None, {"spec": {}}, {"spec": {}}])
    problems = iter(["0/1 available", None])
    monkeypatch.setattr(operator, "_deployment", lambda api, ns, name: next(deps))
    monkeypatch.setattr(operator, "availability_problem", lambda dep: next(problems))
    monkeypatch.setattr(operator, "webhook_service", lambda api: ("cnpg-system", "hook"))

    class Core:
        def list_namespaced_pod(self, ns, label_selector=None):
            return NS(items=[])

        def read_namespaced_endpoints(self, name, ns):
            return NS(subsets=[NS(addresses=["x"])])

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", lambda api: Core())
    api = NS(sanitize_for_serialization=lambda x: x)
    assert operator.wait_available(api, timeout=5, poll=0.01) is None
    monkeypatch.setattr(operator, "_deployment", lambda api, ns, name: None)
    with pytest.raises(HarnessError, match=r"not available after 0s: deployment not found; pods: none"):
        operator.wait_available(api, timeout=0.1, poll=0.01)


def test_roll_extension_image(monkeypatch):
    import kubernetes.client

    monkeypatch.setattr(
        kubernetes.client, "CustomObjectsApi", lambda api: NS(patch_namespaced_custom_object=lambda *a, **k: None)
    )
    d = fake_dep()
    d.api_client = None
    d.spec = NS(mode=deploy.IMAGEVOLUME, cluster_name="c1", extension_name="ext", instances=1, extension_image="old")
    d.cluster_doc = {"spec": {"postgresql": {"extensions": [{"image": {"reference": "old"}}]}}}
    d.pods = lambda: [{"metadata": {"name": "p", "uid": "u"}}]
    d.cluster = lambda: {}
    monkeypatch.setattr(deploy, "replace", lambda spec, **kw: spec)
    monkeypatch.setattr(deploy, "pod_failure", lambda p: None)
    not_replaced = [deploy.cluster_finding("cnpg.rollout", "p", "not restarted yet")]
    rolls = iter([not_replaced, []])
    monkeypatch.setattr(deploy, "rollout_problems", lambda *a: next(rolls))
    monkeypatch.setattr(deploy, "cluster_health", lambda c: (True, "healthy"))
    assert d.roll_extension_image("new", timeout=5, poll=0.01) == "healthy"
    monkeypatch.setattr(deploy, "rollout_problems", lambda *a: not_replaced)
    with pytest.raises(HarnessError, match=r"rolling update to new not done after 0s: p: not restarted yet"):
        d.roll_extension_image("new", timeout=0.1, poll=0.01)
