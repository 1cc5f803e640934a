"""The cluster kit: a real single-node Kubernetes built on this machine from upstream sources.

Where no kind node image can be pulled (our CI machines reach package registries only), the
kit builds one from pinned sources and starts it with real kind and the podman provider:

    Go modules (proxy, h1 sums pinned)   k8s.io/kubernetes -> kubelet, kubeadm, kubectl and the
                                         control-plane images; sigs.k8s.io/kind -> kind and its
                                         node files; sigs.k8s.io/cri-tools -> crictl
    Debian packages (versions + sha256)  trixie root file system with systemd 257 (cgroup v1
                                         still works there), forky's containerd 2.1.9, runc,
                                         CNI plugins and etcd
    C (kubernetes' build/pause)          the pause image, a static binary

Everything is cached by its inputs under ``<cache>/kit`` (binaries) and in podman (images),
so a second ``up`` only starts the cluster. Each step prints one progress line with what it
builds and, when done, its time; the times are kept in ``<cache>/kit/timings.json`` for the
benchmark report.

Clusters (``VARIANTS``): ``1.36`` (ImageVolume GA), ``1.34`` (beta gate turned on) and
``1.34-gate-off`` (the negative case: its API server drops image volumes). The API server is
published on 127.0.0.1 only; pods live in network namespaces inside the node container.

CLI (``./harness cluster up|down|status [VARIANT]``): ``python -m extharness.kube.kit``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from extharness.errors import EnvironmentMissing, HarnessError
from extharness.kube.kind import create_retrying_network_race
from extharness.runtime.cache import default_cache_dir
from extharness.runtime.locks import held_lock
from extharness.runtime.processes import run
from extharness.runtime.settings import limit_of

# -- pins ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    sum: str  # the module zip's h1 hash, as go.sum records it


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    suite: str
    sha256: str


KUBERNETES = {
    "1.36": GoModule("k8s.io/kubernetes", "v1.36.3", "h1:qDQdoMiluAE2Eab6Fa52YV+WjiGz9mZFFoagEA6cI+o="),
    "1.34": GoModule("k8s.io/kubernetes", "v1.34.4", "h1:Yy6R4QB8C9kJPp25GFqEvX5XQwY5qzKeqD0Xx6oAcmk="),
}
KIND = GoModule("sigs.k8s.io/kind", "v0.33.0", "h1:AjvDv3vOygb/VKLVQW87lfktIBzkxR8Ump9DjxC8+Lk=")
ETCD = GoModule("go.etcd.io/etcd/server/v3", "v3.6.8", "h1:U2strdSEy1U8qcSzRIdkYpvOPtBy/9i/IfaaCI9flZ4=")
LOCAL_PATH = GoModule(  # kind ships v0.0.34; v0.0.30 is the newest the module proxy and sumdb serve here
    "github.com/rancher/local-path-provisioner", "v0.0.30", "h1:OkiuofkCSscddl7tma/B9Ox1wu+JEVSrP7IcZI65Ggo="
)
CRI_TOOLS = GoModule("sigs.k8s.io/cri-tools", "v1.37.0", "h1:BmTImEoTX3KPXCLwmIU9mfCC8umUqF4R8WibY9eVU9Y=")

#: CloudNativePG lines the kit builds, at the newest patch the Go module proxy serves here
#: (1.28.3+ are refused by the proxy; 1.29.2 is not in the checksum database).
CNPG = {
    "1.28": GoModule("github.com/cloudnative-pg/cloudnative-pg", "v1.28.2", "h1:KSvRDBci7Q6XYrfFq1fCRa5mKRUGuRWovcjajNfRV3U="),
    "1.29": GoModule("github.com/cloudnative-pg/cloudnative-pg", "v1.29.1", "h1:ZNEt1TMlnQKXI1kho2UqQuqdfvIvjGln4kN7C1lsmGA="),
    "1.30": GoModule("github.com/cloudnative-pg/cloudnative-pg", "v1.30.1", "h1:d1jxp0jQi7/3zrEhsv9ycD+G5ssmkNvDvTmogaGccCw="),
}  # fmt: skip
CNPG_BUILT = ("1.28", "1.29")  # the lines ./harness cluster build makes (1.30 builds too, on request)
CNPG_UPSTREAM_IMAGE = "ghcr.io/cloudnative-pg/cloudnative-pg"

NODE_SUITE = "trixie"  # systemd 257: the last systemd that boots on cgroup v1, which these VMs have
NODE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "iproute2", "ethtool",
    "util-linux", "mount", "kmod", "libseccomp2", "pigz", "fuse-overlayfs", "bash", "ca-certificates",
    "curl", "jq", "procps", "e2fsprogs",
)  # fmt: skip
NODE_DEBS = (
    DebianPackage("containerd", "2.1.9+ds1-5", "forky", "2dda86ce7033fd612fc50e136679d8174ccad680eb29cd4611e0d2a1b84cf591"),
    DebianPackage("runc", "1.3.6+ds1-1", "forky", "8e95d7bdfd22242ae4d48d58e3c277ba2b69dffc4ed8e573b837e6e93925d911"),
    DebianPackage(
        "containernetworking-plugins", "1.9.1+ds1-1", "forky",
        "12857dd3136d61e00bffcc2c8823d14df586e94406098326e02846cfa46a058e",
    ),
)  # fmt: skip
ETCD_VERSION = ETCD.version.lstrip("v")  # what kubeadm 1.36 expects (3.6.8-0); its flags need etcd 3.6
PAUSE_VERSION = "3.10.2"
IMAGE_REPOSITORY = "localhost/extharness/k8s"  # kubeadm's imageRepository for the built images
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_BINARIES = ("kubelet", "kubeadm", "kubectl")
STORAGE_PROVISIONER_IMAGE = f"localhost/extharness/local-path-provisioner:{LOCAL_PATH.version}"
STORAGE_HELPER_IMAGE = "localhost/extharness/local-path-helper:trixie"
HELPER_BINARIES = {"/bin/sh": "/usr/bin/bash", "/bin/mkdir": "/usr/bin/mkdir", "/bin/rm": "/usr/bin/rm"}
KUBE_PROXY = "kube-proxy"  # in nftables mode: its image also holds Debian's nft and the libraries it links


@dataclass(frozen=True)
class Variant:
    """One kind of CI cluster."""

    name: str
    kubernetes: str  # key of KUBERNETES
    image_volume_gate: bool | None  # None: the version's default

    @property
    def cluster_name(self) -> str:
        return "extharness-" + self.name.replace(".", "")

    @property
    def pin(self) -> GoModule:
        return KUBERNETES[self.kubernetes]


VARIANTS = {
    "1.36": Variant("1.36", "1.36", None),
    "1.34": Variant("1.34", "1.34", True),
    "1.34-gate-off": Variant("1.34-gate-off", "1.34", False),
}
DEFAULT_VARIANT = "1.36"

GO_TIMEOUT = limit_of("EXTHARNESS_KIT_BUILD_TIMEOUT")
STEP_TIMEOUT = limit_of("EXTHARNESS_KIT_STEP_TIMEOUT")
#: ``run`` as the kit's steps use it: stderr with stdout (one log), each kind of step its own limit
_kit_run = partial(run, timeout=STEP_TIMEOUT, setting="EXTHARNESS_KIT_STEP_TIMEOUT", merge=True)
_go_run = partial(run, timeout=GO_TIMEOUT, setting="EXTHARNESS_KIT_BUILD_TIMEOUT", merge=True)

#: Bump when something the recipes do changes in a way their inputs do not show.
RECIPE_VERSION = "1"

# -- progress and processes ----------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[cluster kit] {message}", file=sys.stderr, flush=True)


def kit_dir() -> Path:
    return default_cache_dir() / "kit"


def _record_timing(step: str, seconds: float) -> None:
    path = kit_dir() / "timings.json"
    try:
        timings = json.loads(path.read_text())
    except (OSError, ValueError):
        timings = {}
    timings[step] = {"seconds": round(seconds, 1), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(timings, indent=1, sort_keys=True))
    os.replace(tmp, path)


@contextmanager
def _step(name: str, what: str) -> Iterator[None]:
    _say(f"{what} ...")
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    _record_timing(name, elapsed)
    _say(f"{what}: done in {elapsed:.0f}s")


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    h.update(RECIPE_VERSION.encode())
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _cached(path: Path, key: str) -> bool:
    stamp = path / ".extharness-kit"
    return stamp.is_file() and stamp.read_text().strip() == key


def _stamp(path: Path, key: str) -> None:
    (path / ".extharness-kit").write_text(key + "\n")


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- Go ------------------------------------------------------------------------------------


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise EnvironmentMissing("the cluster kit builds Kubernetes from its Go module: install Go >= 1.26")
    return go


def go_module(module: GoModule, log: Path) -> Path:
    """Download ``module`` from the Go module proxy (the go command checks it against the
    checksum database too) and check its h1 sum against our pin; returns its read-only folder."""
    result = _go_run(
        [_go(), "mod", "download", "-json", f"{module.path}@{module.version}"],
        what=f"downloading Go module {module.path}@{module.version}", log=None,
        cwd=Path(tempfile.gettempdir()),
    )  # fmt: skip
    info = json.loads(result.stdout)
    if info.get("Error"):
        raise HarnessError(f"Go module {module.path}@{module.version}: {info['Error']}")
    if info.get("Sum") != module.sum:
        raise HarnessError(
            f"Go module {module.path}@{module.version} has sum {info.get('Sum')}, the kit pins {module.sum}: "
            "refusing to build from it"
        )
    return Path(info["Dir"])


def _go_env() -> dict[str, str]:
    return {"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false", "GOWORK": "off"}


def build_kubernetes(pin: GoModule) -> Path:
    """kubelet, kubeadm, kubectl and the control-plane binaries of ``pin``, built statically.

    The module zip leaves out ``staging/`` (nested modules), so its ``replace ./staging/...``
    lines are pointed at the published ``k8s.io/*`` modules of the matching v0.x version. The
    version variables are set as Kubernetes' own build sets them (``hack/lib/version.sh``):
    kubeadm picks the control-plane images by its own version.
    """
    out = kit_dir() / "bin" / f"kubernetes-{pin.version}"
    key = _digest(pin, CONTROL_PLANE, NODE_BINARIES, KUBE_PROXY)
    if _cached(out, key):
        return out
    log = kit_dir() / "logs" / f"kubernetes-{pin.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with held_lock(kit_dir() / f"kubernetes-{pin.version}.lock", f"building Kubernetes {pin.version}", GO_TIMEOUT):
        if _cached(out, key):
            return out
        names = (*NODE_BINARIES, *CONTROL_PLANE, KUBE_PROXY)
        with _step(f"kubernetes-{pin.version}", f"building Kubernetes {pin.version} ({', '.join(names)}) from Go"):
            source = go_module(pin, log)
            work = _fresh_dir(kit_dir() / "work" / f"kubernetes-{pin.version}")
            shutil.copytree(source, work / "src", symlinks=True)
            src = work / "src"
            _kit_run(["chmod", "-R", "u+w", str(src)], what="making the module sources writable")
            for leftover in ("go.work", "go.work.sum"):
                (src / leftover).unlink(missing_ok=True)
            minor = pin.version.lstrip("v").split(".")[1]
            staging = "v0." + ".".join(pin.version.lstrip("v").split(".")[1:])
            replaced = json.loads(_kit_run([_go(), "mod", "edit", "-json"], what="reading go.mod", cwd=src).stdout)
            for rep in replaced.get("Replace") or []:
                if rep["New"]["Path"].startswith("./staging/"):
                    old = rep["Old"]["Path"]
                    _kit_run([_go(), "mod", "edit", f"-replace={old}={old}@{staging}"], what="editing go.mod", cwd=src)
            ldflags = ["-s", "-w"]
            for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
                ldflags += [
                    f"-X {pkg}.gitVersion={pin.version}", f"-X {pkg}.gitMajor=1", f"-X {pkg}.gitMinor={minor}",
                    f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
                ]  # fmt: skip
            bin_dir = _fresh_dir(work / "bin")
            _say(f"  compiling {', '.join(names)} (the first build of a Kubernetes version takes many minutes)")
            _go_run(
                [_go(), "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", str(bin_dir) + "/",
                 *(f"./cmd/{name}" for name in names)],
                what=f"compiling Kubernetes {pin.version}", log=log, env=_go_env(), cwd=src,
            )  # fmt: skip
            pause = work / "pause"
            _kit_run(
                ["gcc", "-Os", "-static", f"-DVERSION=v{PAUSE_VERSION}-extharness", "-o", str(pause),
                 str(src / "build" / "pause" / "linux" / "pause.c")],
                what="compiling the pause binary (build/pause/linux/pause.c)", log=log,
            )  # fmt: skip
            if out.exists():
                shutil.rmtree(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(bin_dir), out)
            shutil.move(str(pause), out / "pause")
            shutil.rmtree(work)
            _stamp(out, key)
    return out


def _replace_siblings(src: Path, version: str) -> None:
    """A module zip holds one module: ``replace x => ../y`` lines (siblings in the upstream
    repository) are pointed at the published modules of the same version."""
    edits = json.loads(_kit_run([_go(), "mod", "edit", "-json"], what="reading go.mod", cwd=src).stdout)
    for rep in edits.get("Replace") or []:
        new = rep["New"]["Path"]
        if new.startswith("../") and not (src / new).exists():
            old = rep["Old"]["Path"]
            _kit_run([_go(), "mod", "edit", f"-replace={old}={old}@{version}"], what="editing go.mod", cwd=src)


def build_go_tool(module: GoModule, package: str, binary: str) -> Path:
    """A Go tool (kind, crictl) built from its pinned module; returns the binary's path."""
    out = kit_dir() / "bin" / f"{binary}-{module.version}"
    key = _digest(module, package)
    if _cached(out, key):
        return out / binary
    log = kit_dir() / "logs" / f"{binary}-{module.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with held_lock(kit_dir() / f"{binary}.lock", f"building {binary} {module.version}", GO_TIMEOUT):
        if _cached(out, key):
            return out / binary
        with _step(f"{binary}-{module.version}", f"building {binary} {module.version} from Go"):
            source = go_module(module, log)
            work = _fresh_dir(kit_dir() / "work" / f"{binary}-{module.version}")
            shutil.copytree(source, work / "src", symlinks=True)
            _kit_run(["chmod", "-R", "u+w", str(work / "src")], what="making the module sources writable")
            _replace_siblings(work / "src", module.version)
            target = _fresh_dir(out)
            _go_run(
                [_go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(target / binary), package],
                what=f"compiling {binary}", log=log, env=_go_env(), cwd=work / "src",
            )  # fmt: skip
            shutil.rmtree(work)
            _stamp(out, key)
    return out / binary


# -- Debian ----------------------------------------------------------------------------------


def fetch_debs() -> dict[str, Path]:
    """The pinned .deb files (apt-get download with a private apt state: the host's apt
    sources stay untouched), each checked against its sha256."""
    from extharness.postgres.base_images import debian_mirror

    out = kit_dir() / "debs"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {deb.name: out / f"{deb.name}_{deb.version.split(':')[-1]}_amd64.deb" for deb in NODE_DEBS}
    missing = [deb for deb in NODE_DEBS if not wanted[deb.name].exists()]
    if missing:
        with _step("debs", f"downloading {', '.join(f'{d.name}={d.version}' for d in missing)} (Debian)"):
            state = Path(tempfile.mkdtemp(prefix="apt-", dir=kit_dir()))
            try:
                for sub in ("lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/sources.list.d"):
                    (state / sub).mkdir(parents=True)
                mirror = debian_mirror()
                suites = sorted({deb.suite for deb in missing})
                (state / "etc" / "sources.list").write_text("".join(f"deb {mirror} {suite} main\n" for suite in suites))
                opts = [
                    f"-oDir::Etc={state / 'etc'}", f"-oDir::State::Lists={state / 'lists'}",
                    f"-oDir::Cache={state / 'cache'}", "-oDir::State::status=/dev/null",
                    "-oDir::Etc::Trusted=/etc/apt/trusted.gpg", "-oDir::Etc::TrustedParts=/etc/apt/trusted.gpg.d",
                    "-oAPT::Sandbox::User=root",
                ]  # fmt: skip
                log = kit_dir() / "logs" / "debs.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                _kit_run(["apt-get", *opts, "update"], what=f"apt-get update ({', '.join(suites)})", log=log)
                _kit_run(
                    ["apt-get", *opts, "download", *(f"{d.name}={d.version}" for d in missing)],
                    what="apt-get download",
                    log=log,
                    cwd=out,
                )
            finally:
                shutil.rmtree(state, ignore_errors=True)
    for deb in NODE_DEBS:
        path = wanted[deb.name]
        if not path.exists():
            raise HarnessError(f"{deb.name}={deb.version} was not downloaded (is it still in Debian {deb.suite}?)")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != deb.sha256:
            path.unlink()
            raise HarnessError(f"{path.name}: sha256 {actual}, the kit pins {deb.sha256}: refusing to use it")
    return wanted


# -- images ------------------------------------------------------------------------------------

KIT_LABEL = "io.extharness.kit.recipe"


def _podman() -> str:
    podman = shutil.which("podman")
    if podman is None:
        raise EnvironmentMissing(
            "the cluster kit runs kind with the podman provider: install podman (./harness setup --provision)"
        )
    return podman


def _image_key(ref: str) -> str | None:
    result = run(
        [_podman(), "image", "inspect", "--format", "{{index .Labels \"" + KIT_LABEL + "\"}}", ref],
        what=f"reading the recipe label of {ref}", timeout=STEP_TIMEOUT, setting="EXTHARNESS_KIT_STEP_TIMEOUT",
        check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def node_base_image() -> str:
    """The node's operating system, shared by every Kubernetes version: Debian trixie with
    systemd, forky's containerd 2.1.9, runc and CNI plugins, kind's node files (from the kind
    module: entrypoint, systemd units, containerd config), crictl and a bridge CNI config."""
    debs = fetch_debs()
    kind_src = go_module(KIND, kit_dir() / "logs" / "kind-module.log")
    crictl = build_go_tool(CRI_TOOLS, "./cmd/crictl", "crictl")
    key = _digest("base", NODE_SUITE, NODE_PACKAGES, NODE_DEBS, KIND, CRI_TOOLS, BRIDGE_CNI, NODE_TWEAKS)
    ref = f"localhost/extharness/kind-base:{NODE_SUITE}-{key}"
    if _image_key(ref) == key:
        return ref
    with held_lock(kit_dir() / "kind-base.lock", "building the kind node base image", GO_TIMEOUT):
        if _image_key(ref) == key:
            return ref
        from extharness.postgres.base_images import DEBOOTSTRAP_SCRIPT, debian_mirror

        debootstrap = shutil.which("debootstrap")
        if os.geteuid() != 0 or debootstrap is None:
            raise EnvironmentMissing(
                "building the kind node image needs root and debootstrap (./harness setup --provision)"
            )
        log = kit_dir() / "logs" / "kind-base.log"
        log.write_text("")
        work = _fresh_dir(kit_dir() / "work" / "kind-base")
        rootfs = work / "rootfs"
        try:
            with _step("node-rootfs", f"debootstrap Debian {NODE_SUITE} with systemd for the kind node"):
                _kit_run(
                    [debootstrap, "--variant=minbase", f"--include={','.join(NODE_PACKAGES)}", NODE_SUITE,
                     str(rootfs), debian_mirror(), str(DEBOOTSTRAP_SCRIPT)],
                    what="debootstrap", log=log, env={"DEBIAN_FRONTEND": "noninteractive"},
                )  # fmt: skip
            with _step("node-base", "adding containerd, runc, CNI plugins, crictl and kind's node files"):
                for deb in ("containerd", "runc", "containernetworking-plugins"):
                    _kit_run(["dpkg-deb", "-x", str(debs[deb]), str(rootfs)], what=f"unpacking {deb}", log=log)
                # kind's layout: containerd and runc in /usr/local, CNI plugins in /opt/cni/bin
                usr_local = rootfs / "usr" / "local"
                for name in ("containerd", "containerd-shim-runc-v2", "ctr"):
                    os.replace(rootfs / "usr" / "bin" / name, usr_local / "bin" / name)
                os.replace(rootfs / "usr" / "sbin" / "runc", usr_local / "sbin" / "runc")
                cni = rootfs / "opt" / "cni" / "bin"
                cni.mkdir(parents=True)
                for plugin in (rootfs / "usr" / "lib" / "cni").iterdir():
                    shutil.copy2(plugin, cni / plugin.name)
                shutil.copy2(crictl, usr_local / "bin" / "crictl")
                files = kind_src / "images" / "base" / "files"
                _kit_run(
                    ["cp", "-r", "--no-preserve=mode", f"{files}/.", str(rootfs)], what="copying kind's node files"
                )
                for script in (
                    "usr/local/bin/entrypoint",
                    "usr/local/bin/clean-install",
                    *(f"kind/bin/{p.name}" for p in (files / "kind" / "bin").iterdir()),
                ):
                    os.chmod(rootfs / script, 0o755)
                (rootfs / "etc" / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
                (rootfs / "etc" / "cni" / "net.d" / "10-extharness-bridge.conflist").write_text(BRIDGE_CNI)
                (rootfs / "prepare-node.sh").write_text(NODE_TWEAKS)
                _kit_run(
                    ["chroot", str(rootfs), "/bin/sh", "-eu", "/prepare-node.sh"], what="preparing the node", log=log
                )
                (rootfs / "prepare-node.sh").unlink()
            with _step("node-base-import", f"importing it as {ref}"):
                tar = subprocess.Popen(
                    ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE
                )
                _kit_run(
                    [_podman(), "import", "--change", f"LABEL {KIT_LABEL}={key}", "--change", "ENV container=docker",
                     "--change", "STOPSIGNAL SIGRTMIN+3",
                     "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]', "-", ref],
                    what="podman import", log=log, stdin=tar.stdout.fileno() if tar.stdout else None,
                )  # fmt: skip
                tar.wait()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return ref


# A single-node pod network: the bridge plugin with host-local addresses from kind's pod subnet.
BRIDGE_CNI = """{
  "cniVersion": "1.0.0",
  "name": "extharness",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
"""

# Pods may reach each other and the node (the API server, via kube-proxy's DNAT) but nothing
# beyond it: the network rule of our machines, enforced in the node, whatever a pod tries.
POD_EGRESS_RULES = """table inet extharness_egress {
  chain forward {
    type filter hook forward priority -10;
    iifname "cni0" oifname != "cni0" drop
  }
}
"""
POD_EGRESS_UNIT = """[Unit]
Description=extharness: pods reach only the node and each other
Before=kubelet.service containerd.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f /etc/extharness-pod-egress.nft

[Install]
WantedBy=multi-user.target
"""

# What kind's base image Dockerfile does after installing packages (ours, in our words).
NODE_TWEAKS = """
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /kind/images
/usr/local/bin/ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log
"""


def _single_binary_image(
    ref: str, key: str, files: dict[str, Path], entrypoint: str, log: Path, user: str | None = None
) -> Path:
    """A FROM-scratch image holding ``files`` (path in image -> file), saved as a docker archive."""
    archive = kit_dir() / "images" / (ref.replace("/", "_").replace(":", "_") + f"-{key}.tar")
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=kit_dir()) as tmp:
        ctx = Path(tmp)
        lines = ["FROM scratch"]
        for index, (target, source) in enumerate(sorted(files.items())):
            shutil.copy2(source, ctx / f"f{index}")
            lines.append(f"COPY f{index} {target}")
        lines += [
            *([f"USER {user}"] if user else []),
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            f'ENTRYPOINT ["{entrypoint}"]',
            f"LABEL {KIT_LABEL}={key}",
        ]
        (ctx / "Containerfile").write_text("\n".join(lines) + "\n")
        _kit_run([_podman(), "build", "--layers=false", "-q", "-t", ref, "-f", str(ctx / "Containerfile"), str(ctx)],
                 what=f"building {ref}", log=log)  # fmt: skip
        tmp_archive = archive.with_suffix(".tmp")
        _kit_run(
            [_podman(), "save", "--format", "docker-archive", "-o", str(tmp_archive), ref],
            what=f"saving {ref}",
            log=log,
        )
        os.replace(tmp_archive, archive)
    return archive


def component_images(pin: GoModule, bins: Path) -> list[Path]:
    """Docker archives of the images kubeadm runs: the control plane, etcd and pause."""
    log = kit_dir() / "logs" / f"images-{pin.version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    archives = []
    for name in CONTROL_PLANE:
        key = _digest(pin, name, "image")
        archives.append(_single_binary_image(
            f"{IMAGE_REPOSITORY}/{name}:{pin.version}", key, {f"/usr/local/bin/{name}": bins / name},
            f"/usr/local/bin/{name}", log))  # fmt: skip
    archives.append(
        _single_binary_image(
            f"localhost/extharness/pause:{PAUSE_VERSION}",
            _digest(pin, "pause"),
            {"/pause": bins / "pause"},
            "/pause",
            log,
        )
    )
    archives.append(etcd_image(log))
    archives.append(kube_proxy_image(pin, bins, log))
    return archives


def _node_root_files(binaries: dict[str, str], log: Path) -> dict[str, Path]:
    """Files for a small image taken from the node's own root file system: each of ``binaries``
    (path in image -> path in the node root) and every library ``ldd`` says it links."""
    base = node_base_image()
    root = Path(tempfile.mkdtemp(dir=kit_dir(), prefix="node-root-"))
    name = f"extharness-kit-export-{os.getpid()}"
    _kit_run([_podman(), "create", "--name", name, base, "true"], what="podman create", log=log)
    try:
        export = subprocess.Popen([_podman(), "export", name], stdout=subprocess.PIPE)
        _kit_run(["tar", "-C", str(root), "-xf", "-", "--exclude=./dev/*"], what="exporting the node root", log=log,
                 stdin=export.stdout.fileno() if export.stdout else None)  # fmt: skip
        export.wait()
    finally:
        subprocess.run([_podman(), "rm", "-f", name], capture_output=True)
    files: dict[str, Path] = {}
    for target, inside in binaries.items():
        files[target] = (root / inside.lstrip("/")).resolve()
        result = _kit_run(["chroot", str(root), "ldd", inside], what=f"ldd {inside}")  # (its output is the answer)
        found = 0
        for line in result.stdout.splitlines():
            parts = line.split()
            path = (
                parts[2]
                if "=>" in parts and len(parts) > 2
                else (parts[0] if parts and parts[0].startswith("/") else "")
            )
            if path.startswith("/"):
                files[path] = (root / path.lstrip("/")).resolve()
                found += 1
        if not found:
            raise HarnessError(
                f"ldd found no libraries of {inside} in the node root: {result.stdout.strip() or 'no output'}"
            )
    return files


def kube_proxy_image(pin: GoModule, bins: Path, log: Path) -> Path:
    """kube-proxy for nftables mode: the binary, Debian's ``nft`` and the libraries it links,
    taken from the node's own root file system."""
    base = node_base_image()
    ref = f"{IMAGE_REPOSITORY}/{KUBE_PROXY}:{pin.version}"
    key = _digest(pin, KUBE_PROXY, "image", base, "nft in /usr/bin", "with its libraries")
    archive = kit_dir() / "images" / (ref.replace("/", "_").replace(":", "_") + f"-{key}.tar")
    if archive.exists():
        return archive
    files = _node_root_files({"/usr/bin/nft": "/usr/sbin/nft"}, log)
    files[f"/usr/local/bin/{KUBE_PROXY}"] = bins / KUBE_PROXY
    try:
        return _single_binary_image(ref, key, files, f"/usr/local/bin/{KUBE_PROXY}", log)
    finally:
        _drop_node_root(files)


def _drop_node_root(files: dict[str, Path]) -> None:
    for path in files.values():
        for parent in path.parents:
            if parent.name.startswith("node-root-") and parent.parent == kit_dir():
                shutil.rmtree(parent, ignore_errors=True)
                return


# -- default storage: kind's local-path-provisioner, built here -------------------------------


def storage_images(log: Path) -> list[Path]:
    """The two images of kind's default StorageClass: rancher's local-path-provisioner built from
    its Go module, and the helper pod's image (sh, mkdir, rm and their libraries from the node
    root, as kind's ``images/local-path-helper`` stages them from Debian trixie)."""
    provisioner = build_go_tool(LOCAL_PATH, ".", "local-path-provisioner")
    archives = [_single_binary_image(
        STORAGE_PROVISIONER_IMAGE, _digest("local-path-provisioner", LOCAL_PATH),
        {"/usr/local/bin/local-path-provisioner": provisioner}, "/usr/local/bin/local-path-provisioner", log,
    )]  # fmt: skip
    base = node_base_image()
    key = _digest("local-path-helper", base, HELPER_BINARIES)
    archive = kit_dir() / "images" / (STORAGE_HELPER_IMAGE.replace("/", "_").replace(":", "_") + f"-{key}.tar")
    if not archive.exists():
        files = _node_root_files(HELPER_BINARIES, log)
        try:
            archive = _single_binary_image(STORAGE_HELPER_IMAGE, key, files, "/bin/sh", log)
        finally:
            _drop_node_root(files)
    archives.append(archive)
    return archives


def storage_manifest() -> str:
    """kind's own default-storage manifest (``defaultStorageManifest`` in the kind module's
    ``pkg/build/nodeimage/const_storage.go``), read from the pinned module with its two image
    constants replaced by the images built here."""
    source = (
        go_module(KIND, kit_dir() / "logs" / "kind-module.log") / "pkg" / "build" / "nodeimage" / "const_storage.go"
    )
    return go_string_constant(
        source.read_text(),
        "defaultStorageManifest",
        {"storageProvisionerImage": STORAGE_PROVISIONER_IMAGE, "storageHelperImage": STORAGE_HELPER_IMAGE},
    )


def go_string_constant(text: str, name: str, identifiers: dict[str, str]) -> str:
    """The value of ``const name = `...` + ident + `...``` in Go source ``text``, with each
    identifier replaced by ``identifiers[ident]``; an identifier not given is an error."""
    start = text.find(f"const {name} = ")
    if start < 0:
        raise HarnessError(f"Go constant {name} not found")
    pos = start + len(f"const {name} = ")
    parts: list[str] = []
    expect_operand = True
    while pos < len(text):
        char = text[pos]
        if char in " \t":
            pos += 1
        elif expect_operand and char == "`":
            end = text.index("`", pos + 1)
            parts.append(text[pos + 1 : end])
            pos, expect_operand = end + 1, False
        elif expect_operand and (match := re.compile(r"[A-Za-z_]\w*").match(text, pos)):
            ident = match.group(0)
            if ident not in identifiers:
                raise HarnessError(f"Go constant {name} uses {ident}, which the kit does not know how to replace")
            parts.append(identifiers[ident])
            pos, expect_operand = match.end(), False
        elif not expect_operand and char == "+":
            pos, expect_operand = pos + 1, True
        elif not expect_operand and char == "\n":
            # a line break ends the expression unless the next line continues it with '+'
            rest = text[pos:].lstrip()
            if not rest.startswith("+"):
                break
            pos = len(text) - len(rest)
        elif expect_operand and char == "\n":
            pos += 1
        else:
            raise HarnessError(f"Go constant {name}: unexpected {char!r} at offset {pos}")
    if expect_operand or not parts:
        raise HarnessError(f"Go constant {name}: the expression is cut short")
    return "".join(parts)


def etcd_image(log: Path) -> Path:
    """etcd built statically from its Go module, in a ``FROM scratch`` image."""
    etcd = build_go_tool(ETCD, ".", "etcd")
    return _single_binary_image(
        f"localhost/extharness/etcd:{ETCD_VERSION}", _digest("etcd", ETCD), {"/usr/local/bin/etcd": etcd},
        "/usr/local/bin/etcd", log,
    )  # fmt: skip


def node_image(pin: GoModule) -> str:
    """The kind node image for ``pin``: the base plus kubelet/kubeadm/kubectl, ``/kind/version``
    and the component images imported into containerd (``k8s.io`` namespace), as kind's own
    ``build node-image`` does."""
    base = node_base_image()
    bins = build_kubernetes(pin)
    archives = component_images(pin, bins)
    archives += storage_images(kit_dir() / "logs" / f"images-{pin.version}.log")
    storage = storage_manifest()
    key = _digest("node", base, pin, [a.name for a in archives], POD_EGRESS_RULES, POD_EGRESS_UNIT, storage)
    ref = f"localhost/extharness/kind-node:{pin.version}"
    if _image_key(ref) == key:
        return ref
    with held_lock(kit_dir() / "kind-node.lock", f"building the kind node image {ref}", GO_TIMEOUT):
        if _image_key(ref) == key:
            return ref
        log = kit_dir() / "logs" / f"kind-node-{pin.version}.log"
        log.write_text("")
        name = f"extharness-kit-build-{os.getpid()}"
        with _step(f"node-image-{pin.version}", f"building the kind node image {ref} (images preloaded in containerd)"):
            _kit_run(
                [_podman(), "run", "-d", "--name", name, "--privileged", "--entrypoint", "sleep",
                 "-v", f"{archives[0].parent}:/kind/archives:ro", base, "infinity"],
                what="starting the build container", log=log,
            )  # fmt: skip
            try:
                for binary in NODE_BINARIES:
                    _kit_run(
                        [_podman(), "cp", str(bins / binary), f"{name}:/usr/bin/{binary}"],
                        what=f"copying {binary}",
                        log=log,
                    )
                _kit_run([_podman(), "exec", name, "sh", "-c", f"echo {pin.version} > /kind/version && mkdir -p /kind/manifests"],
                         what="kind version", log=log)  # fmt: skip
                for path, text in (
                    ("/etc/extharness-pod-egress.nft", POD_EGRESS_RULES),
                    ("/kind/manifests/default-storage.yaml", storage),
                    ("/etc/systemd/system/extharness-pod-egress.service", POD_EGRESS_UNIT),
                ):
                    _kit_run([_podman(), "exec", "-i", name, "sh", "-c", f"cat > {path}"], what=f"writing {path}", log=log,
                             input=text)  # fmt: skip
                _kit_run([_podman(), "exec", name, "systemctl", "enable", "extharness-pod-egress.service"],
                         what="enabling the pod egress guard", log=log)  # fmt: skip
                script = "\n".join([
                    "set -eu",
                    "containerd >/tmp/containerd.log 2>&1 &",
                    "for i in $(seq 1 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done",
                    *(f"ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests /kind/archives/{a.name}"
                      for a in archives),
                    "ctr --namespace=k8s.io images list -q",
                    "kill %1; wait || true",
                    "rm -f /tmp/containerd.log",
                ])  # fmt: skip
                _kit_run(
                    [_podman(), "exec", name, "bash", "-c", script],
                    what="importing the images into containerd",
                    log=log,
                )
                _kit_run(
                    [_podman(), "commit", "-q",
                     "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                     "--change", f"LABEL {KIT_LABEL}={key}", name, ref],
                    what=f"committing {ref}", log=log,
                )  # fmt: skip
            finally:
                subprocess.run([_podman(), "rm", "-f", "-t", "0", name], capture_output=True)
    return ref


# -- the CloudNativePG operator -------------------------------------------------------------------


def cnpg_operator(pin: GoModule) -> tuple[Path, str]:
    """CloudNativePG's manager built from ``pin`` as a docker archive (``FROM scratch``: the
    static ``/manager`` CNPG's own image has, which the operator also copies into every instance
    pod), and that version's release manifest (``releases/cnpg-X.Y.Z.yaml`` of the module)
    pointing at it; returns (archive, manifest file)."""
    version = pin.version.lstrip("v")
    ref = f"localhost/extharness/cloudnative-pg:{version}"
    out = kit_dir() / "cnpg" / version
    key = _digest("cnpg", pin)
    manifest = out / f"cnpg-{version}.yaml"
    if _cached(out, key):
        return next(out.glob("*.tar")), str(manifest)
    log = kit_dir() / "logs" / f"cnpg-{version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    with held_lock(kit_dir() / f"cnpg-{version}.lock", f"building CloudNativePG {version}", GO_TIMEOUT):
        if _cached(out, key):
            return next(out.glob("*.tar")), str(manifest)
        with _step(f"cnpg-{version}", f"building the CloudNativePG {version} operator from Go"):
            source = go_module(pin, log)
            work = _fresh_dir(kit_dir() / "work" / f"cnpg-{version}")
            shutil.copytree(source, work / "src", symlinks=True)
            _kit_run(["chmod", "-R", "u+w", str(work / "src")], what="making the module sources writable")
            manager = work / "manager"
            ldflags = f"-s -w -X github.com/cloudnative-pg/cloudnative-pg/pkg/versions.buildVersion={version}"
            _go_run([_go(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(manager), "./cmd/manager"],
                    what=f"compiling CloudNativePG {version}", log=log, env=_go_env(), cwd=work / "src")  # fmt: skip
            text = (work / "src" / "releases" / f"cnpg-{version}.yaml").read_text()
            upstream = f"{CNPG_UPSTREAM_IMAGE}:{version}"
            if upstream not in text:
                raise HarnessError(
                    f"releases/cnpg-{version}.yaml does not name {upstream}: cannot point it at the local build"
                )
            _fresh_dir(out)
            (out / manifest.name).write_text(
                text.replace(upstream, ref).replace("imagePullPolicy: Always", "imagePullPolicy: IfNotPresent")
            )
            archive = _single_binary_image(
                ref, key, {"/manager": manager, "/operator/manager_amd64": manager}, "/manager", log,
                user="65532:65532",
            )  # fmt: skip
            shutil.copy2(archive, out / archive.name)
            shutil.rmtree(work)
            _stamp(out, key)
    return next(out.glob("*.tar")), str(manifest)


def built_cnpg_operator(pin: GoModule) -> tuple[Path, str] | None:
    """(archive, manifest) of the operator build of ``pin`` if the kit made it here; builds nothing."""
    out = kit_dir() / "cnpg" / pin.version.lstrip("v")
    if not _cached(out, _digest("cnpg", pin)):
        return None
    return next(out.glob("*.tar")), str(out / f"cnpg-{pin.version.lstrip('v')}.yaml")


# -- the cluster -------------------------------------------------------------------------------


def kind_config(variant: Variant) -> str:
    """kind's Cluster config for a kit cluster (our node image, our network, cgroup v1)."""
    gate = ""
    if variant.image_volume_gate is not None:
        gate = f"featureGates:\n  ImageVolume: {'true' if variant.image_volume_gate else 'false'}\n"
    return f"""# kind config written by the extharness cluster kit for {variant.name}
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
{gate}networking:
  apiServerAddress: 127.0.0.1
  disableDefaultCNI: true      # the node image has a bridge CNI config of its own
  kubeProxyMode: nftables     # Services (the API server's too) resolved inside the node
containerdConfigPatches:
- |-
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true   # no CAP_SYS_RESOURCE on these VMs
    sandbox_image = "localhost/extharness/pause:{PAUSE_VERSION}"
kubeadmConfigPatches:
- |
  kind: ClusterConfiguration
  imageRepository: {IMAGE_REPOSITORY}
  etcd:
    local:
      imageRepository: localhost/extharness
      imageTag: "{ETCD_VERSION}"
- |
  kind: InitConfiguration
  skipPhases: [preflight, addon/coredns]
- |
  kind: KubeletConfiguration
  failCgroupV1: false          # these VMs offer cgroup v1 only
"""


def kind_binary() -> Path:
    return build_go_tool(KIND, ".", "kind")


def _kind_env() -> dict[str, str]:
    return {"KIND_EXPERIMENTAL_PROVIDER": "podman"}


def _host_prerequisites() -> None:
    # kind bind-mounts /lib/modules (absent on these VMs) and kubelet needs shared mounts.
    Path("/lib/modules").mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--make-rshared", "/"], capture_output=True)


def cluster_exists(variant: Variant) -> bool:
    result = _kit_run([str(kind_binary()), "get", "clusters"], what="kind get clusters", env=_kind_env(), check=False)
    return variant.cluster_name in result.stdout.split()


def kubeconfig_path(variant: Variant) -> Path:
    return kit_dir() / "clusters" / f"{variant.cluster_name}.kubeconfig"


def up(variant: Variant) -> Path:
    """Build what is missing, create the cluster unless it runs; returns its kubeconfig."""
    image = node_image(variant.pin)
    kind = kind_binary()
    kubeconfig = kubeconfig_path(variant)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    with held_lock(kit_dir() / f"{variant.cluster_name}.lock", f"starting cluster {variant.cluster_name}", 900):
        if cluster_exists(variant):
            _kit_run([str(kind), "export", "kubeconfig", "--name", variant.cluster_name, "--kubeconfig", str(kubeconfig)],
                     what="kind export kubeconfig", env=_kind_env())  # fmt: skip
            _say(f"cluster {variant.cluster_name} is running; kubeconfig {kubeconfig}")
            return kubeconfig
        _host_prerequisites()
        config = kubeconfig.with_suffix(".kind.yaml")
        config.write_text(kind_config(variant))
        log = kit_dir() / "logs" / f"kind-create-{variant.cluster_name}.log"
        log.write_text("")
        with _step(f"cluster-create-{variant.name}", f"kind create cluster {variant.cluster_name} ({image})"):
            try:
                create_retrying_network_race(lambda: _kit_run(
                    [str(kind), "create", "cluster", "--name", variant.cluster_name, "--image", image,
                     "--config", str(config), "--kubeconfig", str(kubeconfig), "--wait", "120s", "--retain"],
                    what=f"creating cluster {variant.cluster_name}", log=log, env=_kind_env(),
                    timeout=limit_of("EXTHARNESS_KIND_CREATE_TIMEOUT"), setting="EXTHARNESS_KIND_CREATE_TIMEOUT",
                ))  # fmt: skip
            except BaseException:
                _say(f"kind create failed; node logs kept under {kit_dir() / 'logs'}")
                _export_logs(variant, kind)
                _kit_run([str(kind), "delete", "cluster", "--name", variant.cluster_name], what="kind delete", env=_kind_env(),
                         check=False)  # fmt: skip
                raise
    return kubeconfig


def _export_logs(variant: Variant, kind: Path) -> None:
    target = kit_dir() / "logs" / f"kind-export-{variant.cluster_name}"
    _kit_run([str(kind), "export", "logs", str(target), "--name", variant.cluster_name], what="kind export logs",
             env=_kind_env(), check=False, timeout=120)  # fmt: skip


def down(variant: Variant) -> None:
    kind = kind_binary()
    if not cluster_exists(variant):
        _say(f"cluster {variant.cluster_name} is not running")
        return
    with _step(f"cluster-delete-{variant.name}", f"kind delete cluster {variant.cluster_name}"):
        _kit_run(
            [str(kind), "delete", "cluster", "--name", variant.cluster_name],
            what="kind delete cluster",
            env=_kind_env(),
        )
    kubeconfig_path(variant).unlink(missing_ok=True)


# -- for the cnpg tier ---------------------------------------------------------------------------


def built_node_image(variant: Variant) -> str | None:
    """The node image of ``variant`` if the kit has built it on this machine (nothing is built here)."""
    if shutil.which("podman") is None:
        return None
    ref = f"localhost/extharness/kind-node:{variant.pin.version}"
    return ref if _image_key(ref) else None


def built_kind_binary() -> Path | None:
    path = kit_dir() / "bin" / f"kind-{KIND.version}" / "kind"
    return path if path.is_file() and _cached(path.parent, _digest(KIND, ".")) else None


def unavailable(variant: Variant) -> str | None:
    """None when a cluster of ``variant`` can start here from what the kit has built; else why not."""
    if os.environ.get("EXTHARNESS_KIT", "").strip() == "0":
        return "EXTHARNESS_KIT=0: the cluster kit is switched off"
    if os.geteuid() != 0:
        return "the cluster kit runs privileged kind nodes with podman: it needs root"
    if shutil.which("podman") is None:
        return "the cluster kit needs podman (./harness setup --provision)"
    if built_node_image(variant) is None or built_kind_binary() is None:
        return (
            f"the cluster kit's node image for Kubernetes {variant.pin.version} is not built on this machine "
            f"(./harness cluster build {variant.name}, or ./harness setup --provision)"
        )
    return None


def use_podman_provider() -> None:
    """kind (and the harness's kind code) drive podman for kit clusters."""
    os.environ["KIND_EXPERIMENTAL_PROVIDER"] = "podman"
    _host_prerequisites()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "build", "config"))
    parser.add_argument("variants", nargs="*", default=[DEFAULT_VARIANT], metavar="VARIANT",
                        help=f"one of {', '.join(VARIANTS)} or 'all' (default {DEFAULT_VARIANT})")  # fmt: skip
    args = parser.parse_args(argv)
    names = list(VARIANTS) if args.variants == ["all"] else args.variants
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)} (choose from {', '.join(VARIANTS)}, all)")
    try:
        for name in names:
            variant = VARIANTS[name]
            if args.action == "up":
                print(up(variant))
            elif args.action == "down":
                down(variant)
            elif args.action == "build":
                kind_binary()
                print(node_image(variant.pin))
            elif args.action == "config":
                print(kind_config(variant), end="")
            else:
                state = "running" if cluster_exists(variant) else "not running"
                print(f"{variant.cluster_name}: {state} (kubeconfig {kubeconfig_path(variant)})")
        if args.action == "build":
            for line in CNPG_BUILT:
                archive, manifest = cnpg_operator(CNPG[line])
                print(manifest)
    except HarnessError as exc:
        print(f"[cluster kit] error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[cluster kit] interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
