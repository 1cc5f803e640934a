"""Which Kubernetes cluster the cnpg tier uses, and how images get into it.

In order of preference:

1. ``--kubeconfig FILE`` (and ``--kube-context NAME``): any cluster the user already has,
   one node or many. The harness only adds namespaces (and, where it installs them, the CNPG
   operator and images) of its own, and removes only those; images reach the nodes by
   registry reference or by ``--image-loader`` (``kind:CLUSTER``, ``ctr:NODE_CONTAINER``,
   ``registry:127.0.0.1:PORT``).
2. ``--kind-cluster NAME``: an existing kind cluster, reused, never deleted.
3. The cluster kit's node image, when it is built on this machine (``./harness cluster build``,
   done by ``./harness setup --provision``): a kind cluster of the harness's own from it.
4. kind with Docker (or podman): a kind cluster from ``--kind-node-image``.

``ExistingCluster`` offers what the tier needs of a cluster (``api_client``, ``load_image``,
``load_archive``) with the same names as ``KindCluster``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.runtime.processes import last_lines, run
from extharness.runtime.settings import limit_of


def _loading(cmd: list[str], **kwargs: Any) -> Any:
    """``run`` with the limit every command that moves images has."""
    return run(cmd, timeout=limit_of("EXTHARNESS_KIND_LOAD_TIMEOUT"), setting="EXTHARNESS_KIND_LOAD_TIMEOUT", **kwargs)


LOADER_KINDS = ("kind", "ctr", "registry", "none")


@dataclass(frozen=True)
class ImageLoader:
    """How a local image reaches the nodes of a cluster the harness did not create."""

    kind: str  # one of LOADER_KINDS
    target: str = ""  # kind cluster name, node container name, or registry host:port

    @classmethod
    def parse(cls, text: str | None) -> ImageLoader:
        if not text:
            return cls("none")
        kind, _, target = text.partition(":")
        if kind not in LOADER_KINDS:
            raise HarnessError(
                f"--image-loader {text!r}: expected kind:CLUSTER, ctr:NODE_CONTAINER, registry:HOST:PORT or none"
            )
        if kind != "none" and not target:
            raise HarnessError(f"--image-loader {text!r}: {kind} needs a target ({kind}:...)")
        if kind == "registry" and not target.startswith(("127.0.0.1:", "localhost:", "[::1]:")):
            raise HarnessError(
                f"--image-loader {text!r}: the harness pushes only to a registry on this machine (127.0.0.1:PORT)"
            )
        return cls(kind, target)

    def __str__(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{self.target}"


@dataclass
class ExistingCluster:
    """A cluster named by a kubeconfig: used as found, never created, changed or deleted."""

    kubeconfig: Path
    context: str | None = None
    loader: ImageLoader = ImageLoader("none")
    engine_cli: str | None = None
    created: bool = False  # never: the harness did not make it
    #: (node container, image name) the harness put on a node that did not have it before
    added: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.kubeconfig.is_file():
            raise HarnessError(f"--kubeconfig {self.kubeconfig}: no such file")

    @property
    def name(self) -> str:
        return self.context or self.kubeconfig.name

    def api_client(self) -> Any:
        from kubernetes import config

        try:
            return config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        except Exception as exc:  # the client raises ConfigException and plain errors alike
            raise HarnessError(f"--kubeconfig {self.kubeconfig}: {exc}") from None

    def _engine(self) -> str:
        cli = self.engine_cli or shutil.which("podman") or shutil.which("docker")
        if not cli:
            raise EnvironmentMissing("loading a local image into the cluster needs podman or docker")
        return cli

    def load_archive(self, archive: Path) -> list[str]:
        from extharness.kube.kind import archive_image_names

        names = archive_image_names(archive)
        before = {node: self._node_images(node) for node in self._nodes()}
        if self.loader.kind == "kind":
            _loading(["kind", "load", "image-archive", str(archive), "--name", self.loader.target],
                     what=f"kind load image-archive into {self.loader.target}")  # fmt: skip
        elif self.loader.kind == "ctr":
            with archive.open("rb") as handle:
                _loading(
                    [self._engine(), "exec", "-i", self.loader.target, "ctr", "--namespace=k8s.io", "images",
                     "import", "--all-platforms", "-"],
                    what=f"ctr images import on node {self.loader.target}", stdin=handle,
                )  # fmt: skip
        elif self.loader.kind == "registry":
            pushed = []
            for name in names:
                target = f"{self.loader.target}/{name.split('/', 1)[-1]}"
                _loading(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}:{name}",
                          f"docker://{target}"], what=f"pushing {name} to {self.loader.target}")  # fmt: skip
                pushed.append(target)
            return pushed
        else:
            raise HarnessError(
                f"the cluster behind {self.kubeconfig} cannot get local images: give --image-loader "
                "(kind:CLUSTER, ctr:NODE_CONTAINER or registry:127.0.0.1:PORT) or a registry reference"
            )
        for node, had in before.items():
            # every reference the load added: the names and the sha256:<id> entries kind/ctr import make
            new = sorted(self._node_images(node) - had)
            self.added += [(node, ref) for ref in new if (node, ref) not in self.added]
        return names

    # -- what the harness added to the nodes ----------------------------------------------
    def _nodes(self) -> list[str]:
        """The node containers images are loaded into (kind: and ctr: loaders)."""
        if self.loader.kind == "ctr":
            return [self.loader.target]
        if self.loader.kind == "kind":
            out = _loading(
                ["kind", "get", "nodes", "--name", self.loader.target],
                what=f"kind get nodes --name {self.loader.target}",
            ).stdout
            return [line.strip() for line in out.splitlines() if line.strip()]
        return []

    def _node_images(self, node: str) -> set[str]:
        out = _loading([self._engine(), "exec", node, "ctr", "--namespace=k8s.io", "images", "ls", "-q"],
                       what=f"listing the images on node {node}").stdout  # fmt: skip
        return {line.strip() for line in out.splitlines() if line.strip()}

    def remove_added_images(self) -> list[str]:
        """Remove from the nodes the images the harness loaded there (not ones they had before);
        returns what could not be removed. Images pushed to a registry are left there."""
        problems = []
        for node, name in self.added:
            try:
                result = _loading(
                    [self._engine(), "exec", node, "ctr", "--namespace=k8s.io", "images", "rm", name],
                    what=f"removing {name} from node {node}", check=False,
                )  # fmt: skip
            except HarnessError as exc:
                problems.append(f"{node}: {name}: {exc}")
                continue
            if result.returncode != 0 and "not found" not in result.stderr:
                problems.append(f"{node}: {name}: {last_lines(result.stderr, count=1, default='none')}")
        self.added.clear()
        return problems

    def load_image(self, ref: str, cli: str | None = None) -> str:
        cli = cli or self._engine()
        with tempfile.TemporaryDirectory(prefix="extharness-load-") as tmp:
            archive = Path(tmp) / "image.tar"
            _loading([cli, "save", "--format", "docker-archive", "-o", str(archive), ref] if "podman" in cli
                     else [cli, "save", "-o", str(archive), ref], what=f"saving {ref}")  # fmt: skip
            loaded = self.load_archive(archive)
        return loaded[0] if self.loader.kind == "registry" and loaded else ref

    def delete(self, quiet: bool = False) -> None:
        """Never: the harness did not create this cluster."""
