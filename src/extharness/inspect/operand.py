"""What the target operand image (the PostgreSQL image CNPG runs) offers an extension.

Two facts matter for loading a mounted library: the glibc version and the shared libraries
the dynamic linker can find. They are read from the real image when an engine has it
locally, else taken from a documented baseline for its Debian distribution.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from extharness.errors import HarnessError

DEFAULT_OPERAND_IMAGE = "ghcr.io/cloudnative-pg/postgresql:18-minimal-trixie"
#: CloudNativePG runs postgres as UID 26, group 26 (the operand image's postgres user): the one
#: place this number lives outside kube/ (the layout rules, the container backends, the stand-in).
CNPG_POSTGRES_UID = 26
CNPG_POSTGRES_GID = 26


class GlibcVersion(tuple):
    """A glibc version as glibc writes it (``2.41``, the ``2.2.5`` of ``GLIBC_2.2.5``): dotted
    numbers, compared as numbers, printed as written. (Not a PEP 440 version: packaging's parser
    would accept ``2.41rc1`` and costs a few milliseconds of every command's start.)"""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> GlibcVersion | None:
        if not re.fullmatch(r"\d+(\.\d+)*", text):
            return None
        return cls(int(part) for part in text.split("."))

    def __str__(self) -> str:
        return ".".join(str(part) for part in self)

    def __repr__(self) -> str:
        return f"GlibcVersion({str(self)!r})"


#: glibc of each Debian release (the version of its libc6 package).
DEBIAN_GLIBC = {"bookworm": "2.36", "trixie": "2.41", "forky": "2.43", "sid": "2.43"}

#: Libraries present in every Debian-based PostgreSQL 18 operand image: glibc itself plus the
#: runtime dependencies of Debian's postgresql-18 package (libpq, ssl, krb5, ldap, icu, xml,
#: lz4, zstd, zlib, uuid, pam, systemd, numa, liburing, libselinux) and the C/C++ runtimes.
#: Sonames without versions in the ICU case, which changes with the distribution.
BASELINE_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "libcrypt.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
        "libssl.so.3",
        "libcrypto.so.3",
        "libgssapi_krb5.so.2",
        "libkrb5.so.3",
        "libk5crypto.so.3",
        "libcom_err.so.2",
        "libldap.so.2",
        "liblber.so.2",
        "libxml2.so.2",
        "liblz4.so.1",
        "libzstd.so.1",
        "libuuid.so.1",
        "libpam.so.0",
        "libsystemd.so.0",
        "libnuma.so.1",
        "liburing.so.2",
        "libselinux.so.1",
        "libpq.so.5",
        "liblzma.so.5",
        "libcap.so.2",
        "libgcrypt.so.20",
        "libicuuc",
        "libicui18n",
        "libicudata",
    }
)


@dataclass(frozen=True)
class OperandProfile:
    reference: str
    glibc: GlibcVersion
    libraries: frozenset[str]
    source: str  # where the facts came from, said in messages

    def provides(self, soname: str) -> bool:
        if soname in self.libraries:
            return True
        base = re.sub(r"\.so(\.\d+)*$", "", soname)
        return base in self.libraries


def distribution_of(reference: str) -> str | None:
    for name in DEBIAN_GLIBC:
        if re.search(rf"(^|[-:_/]){name}($|[-_.@])", reference):
            return name
    return None


def parse_version(text: str, what: str) -> GlibcVersion:
    version = GlibcVersion.parse(text.strip())
    if version is None:
        raise HarnessError(f"{what}: {text!r} is not a version like 2.41")
    return version


def baseline_profile(reference: str, target_glibc: str | None = None) -> OperandProfile:
    distro = distribution_of(reference)
    if target_glibc:
        glibc, how = parse_version(target_glibc, "--target-glibc"), "--target-glibc"
    elif distro:
        glibc, how = GlibcVersion.parse(DEBIAN_GLIBC[distro]), f"Debian {distro}"
    else:
        glibc, how = (
            GlibcVersion.parse(DEBIAN_GLIBC["trixie"]),
            "Debian trixie (distribution not named in the reference)",
        )
    return OperandProfile(
        reference=reference,
        glibc=glibc,
        libraries=BASELINE_LIBRARIES,
        source=f"documented baseline for {reference} (glibc {glibc} from {how}; library list: extharness BASELINE_LIBRARIES)",
    )


#: Run inside the operand image (not on the host) to list what it offers.
_PROBE = (
    "getconf GNU_LIBC_VERSION 2>/dev/null || ldd --version 2>&1 | head -n1; echo '--libs--'; "
    "for d in /lib /lib64 /usr/lib /lib/*-linux-gnu /usr/lib/*-linux-gnu /usr/local/lib "
    '/usr/lib/postgresql/18/lib; do [ -d "$d" ] && ls -1 "$d"; done 2>/dev/null; '
    "echo '--ext--'; ls -1 /usr/share/postgresql/18/extension 2>/dev/null; true"
)


def parse_probe_output(reference: str, output: str, target_glibc: str | None = None) -> OperandProfile:
    head, _, libs_text = output.partition("--libs--")
    match = re.search(r"(\d+\.\d+)", head)
    if target_glibc:
        glibc = parse_version(target_glibc, "--target-glibc")
    elif match:
        glibc = GlibcVersion.parse(match.group(1))
    else:
        raise HarnessError(f"{reference}: could not read its glibc version (got {head.strip()[:80]!r})")
    libraries = frozenset(line.strip() for line in libs_text.splitlines() if ".so" in line)
    return OperandProfile(
        reference=reference,
        glibc=glibc,
        libraries=libraries,
        source=f"file list of the image {reference} (glibc {glibc})",
    )


def probe_operand(reference: str, engine, cache_dir: Path, target_glibc: str | None = None) -> OperandProfile | None:
    """Read the operand image's facts with the engine, if it has the image locally (cached)."""
    if engine is None or not engine.image_exists(reference):
        return None
    from extharness.postgres.server import throwaway_flags  # here: the server module loads psycopg (~0.1 s)

    image_id = engine.run("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()
    cache = cache_dir / "operand" / f"{image_id.replace(':', '_')}.json"
    if cache.exists():
        output = json.loads(cache.read_text())["output"]
    else:
        output = engine.run(
            "run",
            "--rm",
            *throwaway_flags("operand"),
            "--network",
            "none",
            "--user",
            "0",
            "--entrypoint",
            "/bin/sh",
            reference,
            "-c",
            _PROBE,
        ).stdout
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"reference": reference, "output": output}))
    return parse_probe_output(reference, output, target_glibc)
