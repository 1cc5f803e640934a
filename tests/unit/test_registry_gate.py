"""The release gate by registry reference: a real registry on 127.0.0.1, no container engine.

The multi-arch sample (amd64 + arm64, embedded builder) is pushed to Debian's docker-registry
with skopeo under 1.1, 1 and latest; the layout tier then checks it by reference, as a
release job checks ghcr.io/<owner>/pg_trickle-ext. Deliberately wrong indexes must fail
naming their defect. The registry client itself is tested against the same registry and
against small fakes (token auth, a silent server).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from crafted import canonical_json, run_layout_tier, sha256, with_attestation

from extharness.checks.run import run_rule
from extharness.errors import EnvironmentMissing, HarnessError
from extharness.gate import gate_arguments, release_tags
from extharness.inspect.model import ExtensionImage, FileType, Platform
from extharness.source import registry as registry_module
from extharness.source.acquire import build_sample_release, default_cache_dir
from extharness.source.local_registry import LocalRegistry
from extharness.source.multiarch import build_arm64_sample_release, build_multiarch_sample, multiarch_image
from extharness.source.oci_writer import OCI_INDEX, LayerEntry, OCIImageBlobs, PlatformContent, build_blobs
from extharness.source.registry import (
    RegistryClient,
    RegistryReference,
    read_registry_image,
    resolve_digest,
    resolve_tags,
    uses_plain_http,
)
from extharness.source.release_folder import ReleaseFolder

NAME = "pg_ticker-ext"
BOTH = "linux/amd64,linux/arm64"
FINDING = re.compile(r"^\s+(layout\.[a-z0-9.-]+) error: (.*)$", re.MULTILINE)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_registry() -> Iterator[LocalRegistry]:
    try:
        registry = LocalRegistry()
    except EnvironmentMissing as exc:
        pytest.skip(f"no local registry: {exc}")
    with registry:
        yield registry


@pytest.fixture(scope="module")
def releases() -> tuple[ReleaseFolder, ReleaseFolder]:
    """The sample's amd64 and arm64 release folders (shared cache, built once)."""
    try:
        cache = default_cache_dir()
        return (
            ReleaseFolder.open(build_sample_release(cache, None)),
            ReleaseFolder.open(build_arm64_sample_release(cache)),
        )
    except EnvironmentMissing as exc:
        pytest.skip(f"cannot build the multi-arch sample: {exc}")


@pytest.fixture(scope="module")
def multiarch_layout(releases: tuple[ReleaseFolder, ReleaseFolder]) -> Path:
    return build_multiarch_sample(default_cache_dir())


@pytest.fixture(scope="module")
def published(local_registry: LocalRegistry, multiarch_layout: Path) -> tuple[str, str]:
    """(reference of :1.1, index digest) after pushing the sample under 1.1, 1 and latest."""
    for tag in ("1.1", "1", "latest"):
        local_registry.push_layout(multiarch_layout, NAME, tag)
    index = json.loads((multiarch_layout / "index.json").read_text())
    return local_registry.reference(NAME, "1.1"), index["manifests"][0]["digest"]


def gate(ref: str, tmp_path: Path, *extra: str) -> tuple[int, str, Path, Path]:
    """The documented gate command against ``ref``, no engine, a fresh cache."""
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    proc = run_layout_tier(
        "tests/layout",
        "--ext-image",
        ref,
        "--junitxml",
        str(junit),
        "--summary-md",
        str(summary),
        "--findings-json",
        str(tmp_path / "findings.json"),
        *extra,
        cache_dir=tmp_path / "cache",
        engine="none",
    )
    return proc.returncode, proc.stdout + proc.stderr, junit, summary


def failed_rules(output: str) -> set[str]:
    return {m.group(1) for m in FINDING.finditer(output)}


def without_platform(image: OCIImageBlobs, platform: str) -> OCIImageBlobs:
    """The same index minus one platform's entry (a merge step that forgot an architecture)."""
    nested = json.loads(image.blobs[image.digest])
    nested["manifests"] = [
        m for m in nested["manifests"] if f"{m['platform']['os']}/{m['platform']['architecture']}" != platform
    ]
    data = canonical_json(nested)
    blobs = {d: b for d, b in image.blobs.items() if d != image.digest} | {sha256(data): data}
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(data), "size": len(data)}],
        }
    )
    return OCIImageBlobs(blobs=blobs, index=index, digest=sha256(data), media_type=OCI_INDEX)


def tiny_image(marker: str) -> OCIImageBlobs:
    """A small single-platform image with content no other test shares (its blobs are its own)."""
    entries = [LayerEntry("/share/extension/marker.txt", FileType.FILE, 0o644, marker.encode())]
    return build_blobs([PlatformContent(Platform("linux", "amd64"), entries, {"test": marker})])


# -- the gate, by reference ---------------------------------------------------------------------
def test_gate_passes_for_amd64_and_arm64_by_reference(published: tuple[str, str], tmp_path: Path) -> None:
    ref, _digest = published
    code, output, junit, summary = gate(
        ref, tmp_path, "--platforms", BOTH, "--expect-tags", "1.1,1,latest", "--expect-version", "1.1"
    )
    assert code == 0, output[-3000:]
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", 0)) >= 20 and suite.get("failures") == "0" and suite.get("errors") == "0"
    assert suite.get("skipped") == "0", "every layout check must run on a registry reference"
    names = {case.get("name") for case in suite.iter("testcase")}
    assert {
        "test_tags_resolve_to_tested_index",
        "test_expected_platforms",
        "test_architecture_matches_platform",
    } <= names
    assert summary.read_text().startswith("## extharness: PASSED")
    assert list((tmp_path / "cache" / "blobs" / "sha256").iterdir()), "blobs are cached by digest"


def test_gate_names_an_x86_library_in_the_arm64_entry(
    local_registry: LocalRegistry, releases: tuple[ReleaseFolder, ReleaseFolder], tmp_path: Path
) -> None:
    amd64, _arm64 = releases
    ref = local_registry.push_image(multiarch_image(amd64, amd64), "wrong-arch", "1.1")
    code, output, _junit, summary = gate(ref, tmp_path, "--platforms", BOTH, "--expect-version", "1.1")
    assert code == 1, output[-3000:]
    assert failed_rules(output) == {"layout.elf.architecture"}, output[-3000:]
    assert "[linux/arm64] /lib/pg_ticker.so: is built for amd64" in output
    assert "layout.elf.architecture" in summary.read_text()


def test_gate_names_a_missing_platform(
    local_registry: LocalRegistry, releases: tuple[ReleaseFolder, ReleaseFolder], tmp_path: Path
) -> None:
    amd64, arm64 = releases
    ref = local_registry.push_image(
        without_platform(multiarch_image(amd64, arm64), "linux/arm64"), "missing-arm64", "1.1"
    )
    code, output, _junit, _summary = gate(ref, tmp_path, "--platforms", BOTH, "--expect-version", "1.1")
    assert code == 1, output[-3000:]
    assert failed_rules(output) == {"layout.platforms.expected"}, output[-3000:]
    assert "missing platform(s) linux/arm64 (image has linux/amd64)" in output


def test_gate_names_a_tag_that_points_elsewhere(
    local_registry: LocalRegistry,
    multiarch_layout: Path,
    releases: tuple[ReleaseFolder, ReleaseFolder],
    tmp_path: Path,
) -> None:
    amd64, arm64 = releases
    for tag in ("1.1", "1"):
        local_registry.push_layout(multiarch_layout, "moved-tag", tag)
    stale = without_platform(multiarch_image(amd64, arm64), "linux/arm64")
    local_registry.push_image(stale, "moved-tag", "latest")
    code, output, _junit, _summary = gate(
        local_registry.reference("moved-tag", "1.1"),
        tmp_path,
        "--platforms",
        BOTH,
        "--expect-tags",
        "1.1,1,latest,1.0",
        "--expect-version",
        "1.1",
    )
    assert code == 1, output[-3000:]
    assert failed_rules(output) == {"layout.tags.same-digest"}, output[-3000:]
    messages = [m.group(2) for m in FINDING.finditer(output)]
    assert any(m.startswith(f"tag latest: points at {stale.digest}, not at the tested index") for m in messages)
    assert any(m.startswith("tag 1.0: cannot be resolved:") and "HTTP 404" in m for m in messages)
    assert not any(m.startswith(("tag 1.1:", "tag 1:")) for m in messages)


def test_gate_skips_an_attestation_manifest(
    local_registry: LocalRegistry, releases: tuple[ReleaseFolder, ReleaseFolder], tmp_path: Path
) -> None:
    amd64, arm64 = releases
    ref = local_registry.push_image(with_attestation(multiarch_image(amd64, arm64)), "attested", "1.1")
    code, output, _junit, _summary = gate(ref, tmp_path, "--platforms", BOTH, "--expect-version", "1.1")
    assert code == 0, output[-3000:]
    findings = json.loads((tmp_path / "findings.json").read_text())["findings"]
    assert any(
        f["rule"] == "layout.platforms.expected" and "attestation manifest (unknown/unknown)" in f["message"]
        for f in findings
    )


# -- the registry client against the local registry ---------------------------------------------
def test_index_digest_is_the_digest_the_builder_wrote(published: tuple[str, str], tmp_path: Path) -> None:
    ref, digest = published
    image = read_registry_image(ref, tmp_path)
    assert image.index_digest == digest
    assert sorted(str(p) for p in image.platforms) == ["linux/amd64", "linux/arm64"]
    assert image.annotations["org.opencontainers.image.version"] == "1.1"
    assert resolve_digest(ref) == digest
    assert resolve_tags(ref, ["1.1", "1", "latest"]) == {"1.1": digest, "1": digest, "latest": digest}
    pinned = read_registry_image(f"{RegistryReference.parse(ref).name}@{digest}", tmp_path)
    assert pinned.index_digest == digest


def test_second_read_fetches_no_blobs(
    published: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _digest = published
    counts = {"blob": 0, "manifest": 0}
    fetch_blob, fetch_manifest = RegistryClient.download_blob, RegistryClient.manifest

    def counting_blob(self, *args, **kwargs):
        counts["blob"] += 1
        return fetch_blob(self, *args, **kwargs)

    def counting_manifest(self, *args, **kwargs):
        counts["manifest"] += 1
        return fetch_manifest(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "download_blob", counting_blob)
    monkeypatch.setattr(RegistryClient, "manifest", counting_manifest)
    first = read_registry_image(ref, tmp_path)
    assert counts == {"blob": 4, "manifest": 3}  # config + layer per platform; index + 2 manifests
    cached = list((tmp_path / "blobs" / "sha256").iterdir())
    assert len(cached) == 7 and all(sha256(p.read_bytes()) == f"sha256:{p.name}" for p in cached)
    counts.update(blob=0, manifest=0)
    second = read_registry_image(ref, tmp_path)
    assert counts == {"blob": 0, "manifest": 1}, "only the tag is asked again (it may have moved)"
    assert [i.files.entries for i in second.images] == [i.files.entries for i in first.images]
    assert {p.name for p in tmp_path.iterdir()} == {"blobs"}, "nothing but the blob cache is written"


def test_a_damaged_cache_entry_is_fetched_again(published: tuple[str, str], tmp_path: Path) -> None:
    ref, _digest = published
    image = read_registry_image(ref, tmp_path)
    config = (
        tmp_path
        / "blobs"
        / "sha256"
        / json.loads((tmp_path / "blobs" / "sha256" / image.images[0].manifest_digest.split(":")[1]).read_bytes())[
            "config"
        ]["digest"].split(":")[1]
    )
    config.write_bytes(b"{}")
    again = read_registry_image(ref, tmp_path)
    assert again.images[0].config == image.images[0].config
    assert sha256(config.read_bytes()) == f"sha256:{config.name}"


def test_a_corrupt_blob_on_the_registry_is_rejected(local_registry: LocalRegistry, tmp_path: Path) -> None:
    image = tiny_image(f"corrupt-{tmp_path.name}")
    ref = local_registry.push_image(image, "corrupt", "1")
    layer = json.loads(image.blobs[image.digest])["layers"][0]["digest"]
    stored = local_registry.blob_data_path(layer)
    data = bytearray(stored.read_bytes())
    data[-1] ^= 0xFF  # same length, other bytes: the registry serves it without noticing
    stored.write_bytes(bytes(data))
    with pytest.raises(HarnessError) as caught:
        read_registry_image(ref, tmp_path)
    message = str(caught.value)
    assert f"blob {layer} from {local_registry.host} has digest sha256:" in message and "\n" not in message
    assert not (tmp_path / "blobs" / "sha256" / layer.split(":")[1]).exists(), "a bad blob is never cached"


@pytest.mark.parametrize("name", [f"{NAME}:no-such-tag", "no-such-repository:1.1", f"{NAME}@sha256:{'0' * 64}"])
def test_not_found_is_one_line(
    published: tuple[str, str], local_registry: LocalRegistry, tmp_path: Path, name: str
) -> None:
    with pytest.raises(HarnessError) as caught:
        read_registry_image(f"{local_registry.host}/{name}", tmp_path)
    message = str(caught.value)
    assert "HTTP 404" in message and "\n" not in message
    assert not (tmp_path / "blobs").exists()


# -- the registry client against fakes (no docker-registry needed) ------------------------------
class _TokenRegistry(ThreadingHTTPServer):
    """A registry that wants a bearer token, which its token service gives only for user:secret."""

    def __init__(self, image: OCIImageBlobs) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.image = image
        self.token_requests = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenRegistry
    TOKEN = "t0k3n"
    BASIC = base64.b64encode(b"user:secret").decode()

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self.server.token_requests += 1
            if self.headers.get("Authorization") == f"Basic {self.BASIC}":
                return self._send(200, json.dumps({"token": self.TOKEN}).encode())
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
        if self.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            challenge = (
                f'Bearer realm="http://{self.server.host}/token",service="fake",scope="repository:private/ext:pull"'
            )
            return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"Www-Authenticate": challenge})
        match = re.fullmatch(r"/v2/private/ext/(manifests|blobs)/([^/]+)", self.path)
        if self.path == "/v2/":
            return self._send(200, b"{}")
        image = self.server.image
        if match is None:
            return self._send(404)
        kind, ref = match.groups()
        digest = image.digest if ref == "1" else ref
        data = image.blobs.get(digest)
        if data is None:
            return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        headers = {"Docker-Content-Digest": digest}
        if kind == "manifests":
            headers["Content-Type"] = json.loads(data)["mediaType"]
        return self._send(200, data, headers)


@pytest.fixture
def token_registry() -> Iterator[_TokenRegistry]:
    server = _TokenRegistry(tiny_image("token"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path))  # oras-py also looks at ~/.docker/config.json
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return folder / "config.json"


def test_token_auth_with_credentials_from_the_docker_config(
    token_registry: _TokenRegistry, docker_config: Path, tmp_path: Path
) -> None:
    docker_config.write_text(json.dumps({"auths": {token_registry.host: {"auth": _TokenHandler.BASIC}}}))
    image = read_registry_image(f"{token_registry.host}/private/ext:1", tmp_path / "cache")
    assert image.index_digest == token_registry.image.digest
    assert image.images[0].files.content_of("/share/extension/marker.txt") == b"token"
    assert token_registry.token_requests >= 1


def test_refused_login_is_one_line(token_registry: _TokenRegistry, docker_config: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError) as caught:
        read_registry_image(f"{token_registry.host}/private/ext:1", tmp_path / "cache")
    message = str(caught.value)
    assert "access denied" in message and "HTTP 401" in message and f"docker login {token_registry.host}" in message
    assert "\n" not in message


def test_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(HarnessError) as caught:
        read_registry_image(f"127.0.0.1:{port}/x:1", tmp_path)
    assert f"cannot connect to 127.0.0.1:{port}" in str(caught.value) and "\n" not in str(caught.value)


def test_silent_registry_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry_module.TIMEOUT_ENV, "0.5")
    with socket.socket() as sock:  # accepts connections (kernel backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(HarnessError) as caught:
            read_registry_image(f"{host}/x:1", tmp_path)
    message = str(caught.value)
    assert f"{host} did not answer within 0.5s" in message and registry_module.TIMEOUT_ENV in message


@pytest.mark.parametrize(
    "host, plain",
    [
        ("127.0.0.1:5000", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("localhost", True),
        ("ghcr.io", False),
        ("registry.example:5000", False),
        ("10.0.0.5:5000", False),
    ],
)
def test_plain_http_only_for_loopback(host: str, plain: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(registry_module.INSECURE_ENV, raising=False)
    assert uses_plain_http(host) is plain


def test_plain_http_for_listed_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry_module.INSECURE_ENV, "registry.example:5000, mirror.example")
    assert uses_plain_http("registry.example:5000") and uses_plain_http("mirror.example:443")
    assert not uses_plain_http("registry.example:5001") and not uses_plain_http("ghcr.io")


@pytest.mark.parametrize(
    "text, host, repository, ref",
    [
        ("ghcr.io/owner/pg_trickle-ext:0.2.0", "ghcr.io", "owner/pg_trickle-ext", "0.2.0"),
        (f"ghcr.io/owner/pg_trickle-ext@sha256:{'a' * 64}", "ghcr.io", "owner/pg_trickle-ext", f"sha256:{'a' * 64}"),
        (f"127.0.0.1:5000/x:1@sha256:{'b' * 64}", "127.0.0.1:5000", "x", f"sha256:{'b' * 64}"),
        ("docker://localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest"),
        ("docker.io/postgres:18", "docker.io", "library/postgres", "18"),
        ("localhost/extharness/pg_ticker-ext:1", "localhost", "extharness/pg_ticker-ext", "1"),
    ],
)
def test_reference_parsing(text: str, host: str, repository: str, ref: str) -> None:
    parsed = RegistryReference.parse(text)
    assert (parsed.host, parsed.repository, parsed.ref) == (host, repository, ref)


@pytest.mark.parametrize("text", ["pg_ticker-ext", "ghcr.io/o/x@sha256:short", "ghcr.io/o/x:bad!tag"])
def test_malformed_reference_is_one_line(text: str) -> None:
    with pytest.raises(HarnessError) as caught:
        RegistryReference.parse(text)
    assert "\n" not in str(caught.value)


# -- the tag rules as pure functions ------------------------------------------------------------
def _image(digest: str | None, annotation: str | None = None) -> ExtensionImage:
    from extharness.inspect.model import FileTree, ImageConfig, PlatformImage

    images = [
        PlatformImage(Platform("linux", arch), ImageConfig(labels={"org.opencontainers.image.version": v}), FileTree())
        for arch, v in (("amd64", "1.1"), ("arm64", "1.0"))
    ]
    annotations = {"org.opencontainers.image.version": annotation} if annotation else {}
    return ExtensionImage("reg.example/o/x:1.1", images, index_digest=digest, annotations=annotations)


def test_tag_rules_produce_nothing_without_expectations(make_target) -> None:
    image = _image(f"sha256:{'a' * 64}", "0.9")
    for rule_id in ("layout.tags.same-digest", "layout.tags.version-annotation"):
        assert run_rule(rule_id, image, [], make_target()) == []


def test_same_digest_rule_names_each_wrong_tag(make_target) -> None:
    here, there = f"sha256:{'a' * 64}", f"sha256:{'b' * 64}"
    target = make_target(tag_digests={"1.1": here, "1": there, "latest": "reg.example/o/x:latest: not found"})
    errors = [f for f in run_rule("layout.tags.same-digest", _image(here), [], target) if f.severity.value == "error"]
    assert [(f.path, f.message.split(":")[0]) for f in errors] == [
        ("tag 1", "points at sha256"),
        ("tag latest", "cannot be resolved"),
    ]
    assert "skopeo copy --all docker://reg.example/o/x@" in errors[0].message


def test_version_annotation_rule(make_target) -> None:
    findings = run_rule("layout.tags.version-annotation", _image(None, "1.0"), [], make_target(expect_version="1.1"))
    assert [f.path for f in findings] == ["index.annotations", "config.Labels"]
    assert "linux/arm64 has '1.0'" in findings[1].message and "linux/amd64" not in findings[1].message


# -- the gate command ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "version, tags",
    [
        ("0.2.0", ["0.2.0", "0.2", "latest"]),
        ("1.1", ["1.1", "latest"]),
        ("0.3.0-rc.1", ["0.3.0-rc.1", "0.3"]),
        ("0.2.0+build.5", ["0.2.0+build.5", "0.2", "latest"]),
    ],
)
def test_release_tags(version: str, tags: list[str]) -> None:
    assert release_tags(version) == tags


def test_gate_arguments_are_the_documented_command() -> None:
    args = gate_arguments(
        "ghcr.io/owner/pg_trickle-ext", "0.2.0", BOTH, release_tags("0.2.0"), Path("gate.xml"), Path("gate.md")
    )
    assert " ".join(args).endswith(
        "--ext-image docker://ghcr.io/owner/pg_trickle-ext:0.2.0 --platforms linux/amd64,linux/arm64 "
        "--expect-tags 0.2.0,0.2,latest --expect-version 0.2.0 --junitxml gate.xml --summary-md gate.md"
    )
    assert args[:2] == ["-m", "layout"]
    pinned = gate_arguments(f"ghcr.io/o/x@sha256:{'a' * 64}", "0.2.0", BOTH, ["0.2.0"], Path("g.xml"), Path("g.md"))
    assert f"docker://ghcr.io/o/x@sha256:{'a' * 64}" in pinned
