"""The pieces of the cluster upgrade (tests/cnpg/test_upgrade_cluster.py) that need no cluster.

The run itself is exercised on a real kind cluster with the real operator by that module; here:
the renamed findings, the manifests it applies, how a refused Database is read, and the loopback
relay of the port-forward (with a local echo server standing in for the pod's end of the stream).
"""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace as NS

import pytest

from extharness.checks.findings import Severity
from extharness.checks.upgrade import CLUSTER_RULES, RULES, UpgradeRecord, on_cluster, update_findings
from extharness.errors import HarnessError
from extharness.kube import deploy, manifests
from extharness.kube import portforward as pf
from extharness.kube.imagevolume import IMAGEVOLUME
from extharness.postgres.profiles import load_profile


def test_cluster_findings_are_the_sql_checks_under_cnpg_ids() -> None:
    record = UpgradeRecord("pg_ticker", "old", "1.0", "1.1", update_error="altering version: boom")
    (finding,) = on_cluster(update_findings(record))
    assert finding.rule == "cnpg.upgrade.update-failed"
    assert finding.rule in CLUSTER_RULES
    assert finding.severity is Severity.ERROR and "boom" in finding.message
    assert "cnpg.upgrade.unreplayable" not in CLUSTER_RULES  # a one-image notion, not a cluster's
    assert len(CLUSTER_RULES) == len(RULES) - 1


def test_upgrade_cluster_gives_postgres_a_password_and_each_database_the_extension() -> None:
    spec = deploy.spec_for(
        IMAGEVOLUME,
        extension="pg_ticker",
        operand_image="localhost/op:18",
        extension_image="localhost/pg_ticker-ext:1.0",
        profile=load_profile("pg_ticker"),
    )
    plain, _ = deploy.render(spec, "ns")
    assert "enableSuperuserAccess" not in plain["spec"]
    upgrade = deploy.DeploymentSpec(**{**spec.__dict__, "superuser_access": True, "cluster_name": "extharness-upgrade"})
    cluster, database = deploy.render(upgrade, "ns")
    assert cluster["spec"]["enableSuperuserAccess"] is True
    assert not manifests.check_cluster(cluster).findings
    smoke = deploy.render_extension_database(upgrade, "xh_upgrade_smoke", "ns")
    assert smoke["metadata"]["name"] == "extharness-upgrade-xh-upgrade-smoke"
    assert smoke["spec"]["name"] == "xh_upgrade_smoke" and smoke["spec"]["cluster"] == {"name": "extharness-upgrade"}
    assert smoke["spec"]["extensions"] == [{"name": "pg_ticker", "ensure": "present"}]
    assert not manifests.check_database(smoke, "extharness-upgrade").findings
    assert database["metadata"]["name"] == "extharness-upgrade-app"


def _deployment(states):
    d = deploy.CnpgDeployment.__new__(deploy.CnpgDeployment)
    d.spec = NS(extension="pg_ticker")
    d.database_doc = {"metadata": {"name": "db1"}}
    answers = iter(states)
    d.database = lambda name=None: next(answers, states[-1])  # then the last state, as the API keeps it
    return d


def test_a_refused_version_is_an_answer_not_a_timeout(monkeypatch) -> None:
    monkeypatch.setenv("EXTHARNESS_CNPG_DATABASE_RETRY", "0.2")  # CNPG's retry grace, shortened
    refused = {
        "metadata": {"generation": 3},
        "status": {
            "applied": False,
            "extensions": [
                {
                    "name": "pg_ticker",
                    "applied": False,
                    "message": "altering version: ERROR: extension has no update path (SQLSTATE 22023)",
                }
            ],
        },
    }
    pending = {"metadata": {"generation": 3}, "status": {"applied": True, "observedGeneration": 2}}
    d = _deployment([pending, refused])
    applied, why = d.settle_database("db1", timeout=5, poll=0.01)
    assert applied is False and "no update path" in why
    with pytest.raises(HarnessError, match="Database db1: .*no update path"):
        _deployment([refused]).wait_database(5, 0.01)
    monkeypatch.setenv("EXTHARNESS_CNPG_DATABASE_RETRY", "60")  # the time runs out first: still the answer
    assert _deployment([refused]).settle_database("db1", timeout=0.3, poll=0.01) == (False, why)


def test_forwarded_port_relays_both_ways_on_loopback(monkeypatch) -> None:
    opened = []

    def fake_portforward(method, pod, namespace, ports):
        ours, theirs = socket.socketpair()

        def echo() -> None:
            while data := theirs.recv(4096):
                theirs.sendall(data.upper())
            theirs.close()

        threading.Thread(target=echo, daemon=True).start()
        opened.append((pod, namespace, ports))
        return NS(socket=lambda port: ours, error=lambda port: None)

    import kubernetes.stream

    monkeypatch.setattr(kubernetes.stream, "portforward", fake_portforward)
    with pf.forwarded_port(object(), "ns", "pod-1", 5432) as forward:
        for text in (b"hello", b"again"):  # each connection gets its own stream
            with socket.create_connection(("127.0.0.1", forward.port), timeout=5) as conn:
                conn.sendall(text)
                conn.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := conn.recv(4096):
                    got += chunk
            assert got == text.upper()
        assert forward.explain() == ""
    assert opened == [("pod-1", "ns", "5432"), ("pod-1", "ns", "5432")]
    with pytest.raises(OSError):  # nothing listens once the context is left
        socket.create_connection(("127.0.0.1", forward.port), timeout=2)


def test_a_refused_stream_is_explained(monkeypatch) -> None:
    import kubernetes.stream

    def refused(*args, **kwargs):
        raise RuntimeError("pods 'pod-1' not found")

    monkeypatch.setattr(kubernetes.stream, "portforward", refused)
    with pf.forwarded_port(object(), "ns", "pod-1", 5432) as forward:
        with socket.create_connection(("127.0.0.1", forward.port), timeout=5) as conn:
            assert conn.recv(10) == b""  # closed at once
        threading.Event().wait(0.2)
        assert "pods 'pod-1' not found" in forward.explain()
