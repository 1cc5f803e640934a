"""The module's Cluster and Database as the cnpg tier's tests wait for them: a failure is a finding.

The deployment is shared by every test of a module; when its Cluster never becomes healthy or
its Database is not applied, the first test that needs it fails with that finding
(``cnpg.cluster.healthy``, ``cnpg.database.applied``) and the later ones skip naming it: a root
cause is reported once, not once per test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.kube.deploy import CnpgDeployment, cluster_finding
from extharness.pytest_plugin import FindingRecorder


@dataclass
class ClusterSetup:
    """Waits for ``deployment``'s Cluster and Database; remembers which test reported a failure."""

    deployment: CnpgDeployment
    #: rule id -> the test that reported it
    reported_by: dict[str, str] = field(default_factory=dict)

    @property
    def cluster_subject(self) -> str:
        return f"Cluster/{self.deployment.spec.cluster_name}"

    @property
    def database_subject(self) -> str:
        return f"Database/{self.deployment.database_doc['metadata']['name']}"

    def healthy(self, findings: FindingRecorder) -> str:
        """The Cluster's health summary, once it is healthy (``cnpg.cluster.healthy`` otherwise)."""
        return self._reached("cnpg.cluster.healthy", self.cluster_subject, self.deployment.wait_healthy, findings)

    def ready(self, findings: FindingRecorder) -> str:
        """A healthy Cluster and the Database's extensions applied (``cnpg.database.applied`` otherwise)."""
        healthy = self.healthy(findings)
        applied = self._reached("cnpg.database.applied", self.database_subject, self.deployment.wait_database, findings)
        return f"{healthy}; {applied}"

    def _reached(self, rule: str, subject: str, wait: Callable[[], str], findings: FindingRecorder) -> str:
        if rule in self.reported_by:
            pytest.skip(f"needs {subject}, which failed: {rule} (reported once, by {self.reported_by[rule]})")
        try:
            return wait()
        except EnvironmentMissing as exc:  # a tool this machine lacks: a skip, as harness_step makes it
            missing, failed = str(exc), None
        except HarnessError as exc:
            missing, failed = None, cluster_finding(rule, subject, str(exc))
        # outside the except blocks, so the report shows the finding, not a chained traceback
        if failed is None:
            pytest.skip(missing)
        self.reported_by[rule] = findings.item.nodeid
        findings.fail(failed)
