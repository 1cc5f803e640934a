"""Registry references (``registry/name:tag`` or ``@sha256:...``), read without an engine.

oras-py (the OCI Registry as Storage SDK) parses references and does the authentication:
credentials from the docker config (``auths``, ``credHelpers``, ``credsStore``), bearer
tokens from the registry's token service, anonymous tokens for public images. This module
adds what a release gate needs on top: Accept headers for every index and manifest type,
timeouts, plain HTTP for loopback registries only, digest verification, a cache of blobs by
digest (``<cache>/blobs/sha256/<hex>``) and one-line errors. The image is then read by the
same ``OCIReader`` as OCI layouts and archives. Nothing is written outside the cache and
nothing from the image is executed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import oras.auth
import oras.container
import oras.provider
import requests
from requests.adapters import HTTPAdapter

from extharness.errors import HarnessError
from extharness.inspect.model import ExtensionImage
from extharness.inspect.oci_reader import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON_BYTES,
    OCIReader,
    _is_attestation,
    _load_json,
    max_layer_bytes,
)

#: Seconds to wait for a registry to connect or answer (one request, not the whole pull).
TIMEOUT_ENV = "EXTHARNESS_REGISTRY_TIMEOUT"
#: Comma-separated ``host[:port]`` list spoken to over plain HTTP besides loopback ones.
INSECURE_ENV = "EXTHARNESS_INSECURE_REGISTRIES"

#: Every document a tag can name: indexes first, so multi-arch images come back whole.
MANIFEST_ACCEPT = ", ".join(sorted(INDEX_TYPES) + sorted(MANIFEST_TYPES))
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}

# oras-py retries every failed request five times with sleeps of up to 83 s (2 minutes for an
# unreachable registry) and turns a refused login into ValueError. A gate wants one clear line
# at once, so we call the request function without its retry decorator.
_do_request = getattr(oras.provider.Registry.do_request, "__wrapped__", oras.provider.Registry.do_request)


def registry_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "30")
    try:
        value = float(text)
    except ValueError:
        raise HarnessError(f"{TIMEOUT_ENV}={text!r}: expected a number of seconds") from None
    if value <= 0:
        raise HarnessError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return value


def _hostname(host: str) -> str:
    """``host[:port]`` without the port (``[::1]:5000`` -> ``::1``)."""
    if host.startswith("[") and "]" in host:
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def uses_plain_http(host: str) -> bool:
    """Loopback registries and those listed in EXTHARNESS_INSECURE_REGISTRIES; TLS for the rest."""
    name = _hostname(host)
    listed = {h.strip() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}
    return name in LOOPBACK_HOSTS or name.startswith("127.") or host in listed or name in listed


def docker_config_files() -> list[str]:
    """The credential files ``docker login`` and ``podman/skopeo login`` write."""
    candidates = [Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    elif os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    return [str(p) for p in candidates if p.is_file()]


@dataclass(frozen=True)
class RegistryReference:
    """``host[:port]/repository[:tag][@sha256:...]``."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> RegistryReference:
        text = text.strip().removeprefix("docker://")
        if "/" not in text:
            raise HarnessError(
                f"{text!r} is not a registry reference (expected registry/name:tag, "
                "e.g. ghcr.io/owner/pg_trickle-ext:0.2.0)"
            )
        explicit_tag = ":" in text.split("@", 1)[0].rsplit("/", 1)[-1]
        first, rest = text.split("/", 1)
        try:
            # "localhost/name" names a registry, as docker and podman read it (no dot, no port).
            container = (
                oras.container.Container(rest, registry=first)
                if first == "localhost"
                else oras.container.Container(text)
            )
        except ValueError as exc:
            raise HarnessError(f"{text!r} is not a registry reference: {exc}") from None
        host = container.registry
        repository = container.api_prefix
        if host in ("docker.io", "index.docker.io") and "/" not in repository:
            repository = f"library/{repository}"
        digest = container.digest or None
        if digest is not None and not DIGEST_RE.match(digest):
            raise HarnessError(f"{text!r}: {digest!r} is not a sha256 digest (sha256:<64 hex digits>)")
        tag = container.tag if explicit_tag or digest is None else None
        if tag is not None and not TAG_RE.match(tag):
            raise HarnessError(f"{text!r}: {tag!r} is not a valid tag")
        return cls(host, repository, tag, digest)

    @property
    def ref(self) -> str:
        """What the manifests endpoint is asked for: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.host in ("docker.io", "index.docker.io") else self.host

    def with_tag(self, tag: str) -> RegistryReference:
        return RegistryReference(self.host, self.repository, tag, None)

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


class _TimeoutAdapter(HTTPAdapter):
    """requests has no session-wide timeout; oras-py passes none. This adds one to every call."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().send(request, **kwargs)


def _registry_error(response: requests.Response) -> str:
    """The registry's own words from an error body ({"errors": [{"code", "message"}]})."""
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""


@dataclass
class Manifest:
    data: bytes
    digest: str
    media_type: str


@dataclass
class RegistryClient:
    """One registry host, spoken to over the distribution API with oras-py's session and auth."""

    host: str
    api_host: str = ""
    timeout: float = field(default_factory=registry_timeout)

    def __post_init__(self) -> None:
        self.api_host = self.api_host or self.host
        self.scheme = "http" if uses_plain_http(self.host) else "https"
        self._registry: oras.provider.Registry | None = None

    @classmethod
    def for_reference(cls, ref: RegistryReference) -> RegistryClient:
        return cls(ref.host, ref.api_host)

    # -- connection and authentication ---------------------------------------------------------
    def _connect(self, ref: RegistryReference) -> oras.provider.Registry:
        if self._registry is not None:
            return self._registry
        registry = oras.provider.Registry(hostname=self.api_host, insecure=self.scheme == "http")
        adapter = _TimeoutAdapter(self.timeout)
        registry.session.mount("http://", adapter)
        registry.session.mount("https://", adapter)
        # The /v2/ ping tells whether the registry is there and how it wants credentials.
        ping = self._send(registry, "GET", f"{self.scheme}://{self.api_host}/v2/", {}, ref, authenticate=False)
        challenge = ping.headers.get("Www-Authenticate", "")
        if ping.status_code == 404:
            raise HarnessError(f"{ref}: {self.host} does not serve the registry API (GET /v2/ gave HTTP 404)")
        if challenge.lower().startswith("basic"):
            registry.auth = oras.auth.get_auth_backend("basic", registry.session, self.scheme == "http")
        container = oras.container.Container(f"{self.api_host}/{ref.repository}:x")
        registry.auth.load_configs(container, configs=docker_config_files())
        if challenge.lower().startswith("basic") and not getattr(registry.auth, "_basic_auth", None):
            raise HarnessError(
                f"{ref}: {self.host} requires a login (HTTP 401, basic auth) and no credentials "
                f"for it are in the docker config: run docker login {self.host}"
            )
        self._registry = registry
        return registry

    def _send(
        self,
        registry: oras.provider.Registry,
        method: str,
        url: str,
        headers: dict[str, str],
        ref: RegistryReference,
        stream: bool = False,
        authenticate: bool = True,
    ) -> requests.Response:
        try:
            if authenticate:
                return _do_request(registry, url, method, headers=dict(headers), stream=stream)
            return registry.session.request(method, url, headers=headers, stream=stream, verify=True)
        except requests.Timeout:
            raise HarnessError(
                f"{ref}: {self.host} did not answer within {self.timeout:g}s ({method} {_path(url)}); "
                f"set {TIMEOUT_ENV} to wait longer"
            ) from None
        except requests.exceptions.SSLError as exc:
            hint = f" (plain HTTP is used only for loopback hosts and {INSECURE_ENV})"
            raise HarnessError(f"{ref}: TLS with {self.host} failed: {_reason(exc)}{hint}") from None
        except requests.ConnectionError as exc:
            raise HarnessError(
                f"{ref}: cannot connect to {self.host} ({_reason(exc)}); is the registry running and the name right?"
            ) from None
        except requests.RequestException as exc:
            raise HarnessError(f"{ref}: request to {self.host} failed: {_reason(exc)}") from None
        except ValueError:  # oras-py: "Cannot respond to request for authentication."
            raise HarnessError(self._denied(ref, 401)) from None

    def _denied(self, ref: RegistryReference, status: int) -> str:
        word = "unauthorized" if status == 401 else "forbidden"
        return (
            f"{ref}: access denied by {self.host} (HTTP {status} {word}): log in with docker login "
            f"{self.host} (credentials are read from {', '.join(docker_config_files()) or '~/.docker/config.json'}) "
            "or check the repository name"
        )

    def _get(
        self, ref: RegistryReference, path: str, accept: str | None = None, method: str = "GET", stream: bool = False
    ) -> requests.Response:
        registry = self._connect(ref)
        headers = {"Accept": accept} if accept else {}
        response = self._send(registry, method, f"{self.scheme}://{self.api_host}{path}", headers, ref, stream)
        if response.status_code < 400:
            return response
        detail = _registry_error(response) if method != "HEAD" else ""
        response.close()
        if response.status_code in (401, 403):
            raise HarnessError(self._denied(ref, response.status_code))
        if response.status_code == 404:
            what = path.rsplit("/", 1)[-1]
            kind = "manifest" if "/manifests/" in path else "blob"
            raise HarnessError(
                f"{ref}: not found on {self.host} (HTTP 404: no {kind} {what} in repository "
                f"{ref.repository}{'; ' + detail if detail else ''})"
            )
        if response.status_code == 429:
            raise HarnessError(f"{ref}: {self.host} is rate limiting (HTTP 429); log in or try again later")
        raise HarnessError(
            f"{ref}: {self.host} answered HTTP {response.status_code} {response.reason} "
            f"to {method} {path}{': ' + detail if detail else ''}"
        )

    # -- the distribution API ---------------------------------------------------------------------
    def manifest(self, ref: RegistryReference, reference: str | None = None) -> Manifest:
        """GET a manifest or index by tag or digest; its digest is the sha256 of the bytes served."""
        reference = reference or ref.ref
        response = self._get(ref, f"/v2/{ref.repository}/manifests/{reference}", MANIFEST_ACCEPT)
        data = response.content
        if len(data) > MAX_JSON_BYTES:
            raise HarnessError(f"{ref}: manifest {reference} is {len(data)} bytes, too large for a manifest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        claimed = response.headers.get("Docker-Content-Digest")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise HarnessError(
                f"{ref}: {self.host} says manifest {reference} has digest {claimed} but served bytes "
                f"with digest {digest}; the registry or a proxy modified it"
            )
        if reference.startswith("sha256:") and reference != digest:
            raise HarnessError(f"{ref}: asked for manifest {reference}, got bytes with digest {digest}")
        media = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(data, digest, media)

    def head_digest(self, ref: RegistryReference) -> str:
        """The digest a tag points at (HEAD, falling back to GET when the header is missing)."""
        response = self._get(ref, f"/v2/{ref.repository}/manifests/{ref.ref}", MANIFEST_ACCEPT, method="HEAD")
        claimed = response.headers.get("Docker-Content-Digest", "")
        if DIGEST_RE.match(claimed):
            return claimed
        return self.manifest(ref).digest

    def download_blob(self, ref: RegistryReference, digest: str, dest: Path, limit: int | None = None) -> Path:
        """Stream a blob to ``dest`` (atomically), verifying its digest; nothing is kept on mismatch."""
        limit = max_layer_bytes() if limit is None else limit
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{id(self)}.tmp")
        hasher = hashlib.sha256()
        size = 0
        try:
            with self._get(ref, f"/v2/{ref.repository}/blobs/{digest}", stream=True) as response, tmp.open("wb") as out:
                try:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise HarnessError(f"{ref}: blob {digest} is larger than {limit} bytes; refusing it")
                        hasher.update(chunk)
                        out.write(chunk)
                except requests.RequestException as exc:
                    raise HarnessError(
                        f"{ref}: download of blob {digest} from {self.host} broke off "
                        f"({_reason(exc)}); set {TIMEOUT_ENV} to wait longer"
                    ) from None
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise HarnessError(
                    f"{ref}: blob {digest} from {self.host} has digest {actual}; "
                    "the registry's copy is corrupt or was modified"
                )
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                tmp.unlink()
        return dest

    def close(self) -> None:
        if self._registry is not None:
            self._registry.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]


def _reason(exc: BaseException) -> str:
    """The useful words of a requests/urllib3 exception (``[Errno 111] Connection refused``), on one line."""
    text = " ".join(str(exc).split())
    found = re.search(
        r"\[Errno -?\d+\] [^'\")]+|Name or service not known|timed out|certificate verify failed[^'\")]*", text
    )
    return found.group(0).strip() if found else text[:200]


def _hex(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise HarnessError(f"malformed or unsupported digest {digest!r} (only sha256 is supported)")
    return digest.split(":", 1)[1]


@dataclass
class RegistryBlobStore:
    """A BlobStore over ``<cache>/blobs/sha256``: cached blobs are read, missing ones fetched.

    Digests named in an index's ``manifests`` list come from the manifests endpoint (not every
    registry serves manifests as blobs); everything else from the blobs endpoint.
    """

    client: RegistryClient
    ref: RegistryReference
    cache_dir: Path
    manifests: set[str] = field(default_factory=set)

    def path_of(self, digest: str) -> Path:
        return self.cache_dir / "blobs" / "sha256" / _hex(digest)

    def cached(self, digest: str) -> bytes | None:
        path = self.path_of(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            path.unlink(missing_ok=True)  # a damaged cache entry: fetch it again
            return None
        return data

    def put(self, digest: str, data: bytes) -> None:
        path = self.path_of(digest)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def note(self, doc: Any) -> None:
        """Remember which digests an index names, so they are fetched as manifests."""
        if isinstance(doc, dict) and isinstance(doc.get("manifests"), list):
            for desc in doc["manifests"]:
                if isinstance(desc, dict) and isinstance(desc.get("digest"), str) and not _is_attestation(desc):
                    self.manifests.add(desc["digest"])

    def read(self, path: str) -> bytes:
        digest = "sha256:" + path.rsplit("/", 1)[-1]
        data = self.cached(digest)
        if data is None:
            if digest in self.manifests:
                data = self.client.manifest(self.ref, digest).data
                self.put(digest, data)
            else:
                data = self.client.download_blob(self.ref, digest, self.path_of(digest)).read_bytes()
        if digest in self.manifests:
            self.note(_load_json(data, str(self.ref)))
        return data


def read_registry_image(reference: str, cache_dir: Path) -> ExtensionImage:
    """Read a multi-arch (or single) image over the registry API into the image model.

    Every blob is verified and cached by digest under ``cache_dir/blobs/sha256``; a second read
    of the same image fetches only the top-level manifest (a tag may have moved).
    """
    ref = RegistryReference.parse(reference)
    where = str(ref)
    with RegistryClient.for_reference(ref) as client:
        top = client.manifest(ref)
        store = RegistryBlobStore(client, ref, Path(cache_dir))
        store.put(top.digest, top.data)
        doc = _load_json(top.data, where)
        if not isinstance(doc, dict):
            raise HarnessError(f"{where}: the manifest is not a JSON object")
        store.note(doc)
        image = ExtensionImage(reference=where, images=[], index_digest=top.digest)
        OCIReader(store, where).walk(doc, top.digest, image)
        image.annotations = {str(k): str(v) for k, v in (doc.get("annotations") or {}).items()}
    if not image.images:
        raise HarnessError(f"{where}: the image holds no runnable platform (only attestations or nothing)")
    return image


def resolve_digest(reference: str) -> str:
    """The digest ``reference`` (a tag, or a pinned digest) points at, as the registry serves it."""
    ref = RegistryReference.parse(reference)
    with RegistryClient.for_reference(ref) as client:
        return client.head_digest(ref)


def resolve_tags(reference: str, tags: list[str] | tuple[str, ...]) -> dict[str, str]:
    """tag -> digest for every tag in the repository of ``reference``; a tag that cannot be
    resolved maps to the one-line reason instead (the tag rules report it)."""
    ref = RegistryReference.parse(reference)
    resolved: dict[str, str] = {}
    with RegistryClient.for_reference(ref) as client:
        for tag in tags:
            if not TAG_RE.match(tag):
                resolved[tag] = f"{tag!r} is not a valid tag"
                continue
            try:
                resolved[tag] = client.head_digest(ref.with_tag(tag))
            except HarnessError as exc:
                resolved[tag] = str(exc)
    return resolved


__all__ = [
    "RegistryReference",
    "RegistryClient",
    "RegistryBlobStore",
    "read_registry_image",
    "resolve_digest",
    "resolve_tags",
    "uses_plain_http",
]
