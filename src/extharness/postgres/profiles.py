"""Extension profiles: what the sql (and cnpg) tier needs to know beyond the image.

A profile is a small TOML file (built in: ``src/extharness/profiles/*.toml``; or any file
given with ``--ext-profile FILE``)::

    name = "pg_ticker"                   # profile name (default: the file name)
    extension = "pg_ticker"              # the extension (control file name)
    cnpg_name = "pg-ticker"              # .spec.postgresql.extensions[].name (default: extension, _ -> -)
    preload = ["pg_ticker"]              # shared_preload_libraries entries (bare names)
    background_workers = ["pg_ticker ticker"]   # backend_type values expected when preloaded
    module_name = "pg_ticker"            # optional: pg_get_loaded_modules() name / version
    module_version = "1.1.0"
    ld_library_path = ["system"]         # optional: CNPG ld_library_path entries
    [settings]                           # extra server settings
    "pg_ticker.interval_ms" = "200"
    [[smoke]]                            # statements run in order after CREATE EXTENSION
    sql = "SELECT ticker.add(2, 3)"
    expect = [[5]]                       # optional: the exact rows
    [data]                               # optional: data that must survive pg_dump/pg_restore
    setup = "INSERT ..."
    check = "SELECT ..."
    expect = [[...]]

Without a profile the generic checks still run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from extharness.errors import HarnessError
from extharness.kube.manifests import EXTENSION_NAME_MAX, cnpg_name_for, name_problem

_KNOWN_KEYS = {
    "name",
    "extension",
    "cnpg_name",
    "preload",
    "background_workers",
    "module_name",
    "module_version",
    "ld_library_path",
    "settings",
    "smoke",
    "data",
    "description",
}


@dataclass(frozen=True)
class SmokeStep:
    sql: str
    expect: list[list] | None = None  # None: the statement must only succeed


@dataclass(frozen=True)
class Profile:
    name: str
    extension: str
    cnpg_name: str
    preload: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    background_workers: list[str] = field(default_factory=list)
    smoke: list[SmokeStep] = field(default_factory=list)
    data_setup: str = ""
    data_check: SmokeStep | None = None
    module_name: str | None = None
    module_version: str | None = None
    ld_library_path: list[str] = field(default_factory=list)
    source: str = ""  # where the profile came from, for messages

    def statements(self) -> list[tuple[str, str]]:
        """(where, sql) of every SQL text in the profile, for static checks."""
        found = [(f"smoke[{i}]", step.sql) for i, step in enumerate(self.smoke)]
        if self.data_setup.strip():
            found.append(("data.setup", self.data_setup))
        if self.data_check is not None:
            found.append(("data.check", self.data_check.sql))
        return found


def builtin_names() -> list[str]:
    folder = resources.files("extharness") / "profiles"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def _builtin_text(name: str) -> str | None:
    resource = resources.files("extharness") / "profiles" / f"{name}.toml"
    return resource.read_text() if resource.is_file() else None


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or a TOML file by path; HarnessError says what is wrong."""
    text_name = str(name_or_path)
    path = Path(text_name).expanduser()
    if path.suffix == ".toml" or "/" in text_name or path.is_file():
        if not path.is_file():
            raise HarnessError(f"--ext-profile {text_name}: no such file")
        return parse_profile(path.read_text(), source=str(path), default_name=path.stem)
    text = _builtin_text(text_name)
    if text is None:
        raise HarnessError(
            f"--ext-profile {text_name}: no built-in profile of that name (built in: {', '.join(builtin_names())}); "
            "or give the path of a .toml file"
        )
    return parse_profile(text, source=f"built-in profile {text_name}", default_name=text_name)


def profile_for_extension(extension: str) -> Profile | None:
    """The built-in profile of ``extension``, if there is one."""
    for name in builtin_names():
        profile = load_profile(name)
        if profile.extension == extension:
            return profile
    return None


def parse_profile(text: str, source: str = "profile", default_name: str | None = None) -> Profile:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{source}: not valid TOML: {exc}") from None
    return profile_from_dict(doc, source, default_name)


def profile_from_dict(doc: dict[str, Any], source: str = "profile", default_name: str | None = None) -> Profile:
    def fail(message: str) -> HarnessError:
        return HarnessError(f"{source}: {message}")

    unknown = sorted(set(doc) - _KNOWN_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})")
    extension = doc.get("extension")
    if not isinstance(extension, str) or not extension:
        raise fail("missing key 'extension' (the extension's name, as in CREATE EXTENSION)")
    # Default: the extension's name with '_' -> '-', which every CNPG 1.27+ accepts (1.28.0 refuses '_').
    cnpg_name = doc.get("cnpg_name", cnpg_name_for(extension))
    if not isinstance(cnpg_name, str) or name_problem(cnpg_name, None):
        raise fail(
            f"cnpg_name {cnpg_name!r} is not a valid CloudNativePG extension name "
            f"(lower-case letters, digits, '-' and '_', starting and ending alphanumeric, at most {EXTENSION_NAME_MAX})"
        )

    def strings(key: str) -> list[str]:
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(f"{key} must be a list of non-empty strings")
        return list(value)

    preload = strings("preload")
    for lib in preload:
        if "/" in lib or lib.startswith("$"):
            raise fail(f"preload entry {lib!r}: CNPG wants bare library names (no $libdir/, no path)")
    settings = doc.get("settings", {})
    if not isinstance(settings, dict):
        raise fail('[settings] must be a table of name = "value"')
    clean_settings: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        if not isinstance(value, (str, int, float)):
            raise fail(f"setting {key}: value must be a string or number")
        if key == "shared_preload_libraries":
            raise fail("put shared_preload_libraries in 'preload', not [settings] (CNPG blocks it in parameters)")
        clean_settings[key] = str(value)

    smoke_doc = doc.get("smoke", [])
    if not isinstance(smoke_doc, list):
        raise fail("smoke must be an array of tables ([[smoke]])")
    smoke = [_step(item, f"smoke[{i}]", fail) for i, item in enumerate(smoke_doc)]

    data = doc.get("data", {})
    if not isinstance(data, dict):
        raise fail("[data] must be a table with setup, check and expect")
    data_setup = data.get("setup", "")
    if not isinstance(data_setup, str):
        raise fail("data.setup must be a string of SQL")
    data_check = None
    if "check" in data:
        data_check = _step(
            {"sql": data["check"], **({"expect": data["expect"]} if "expect" in data else {})}, "data.check", fail
        )
    elif "expect" in data:
        raise fail("data.expect without data.check")

    def optional_str(key: str) -> str | None:
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise fail(f"{key} must be a string")
        return value

    name = doc.get("name", default_name or extension)
    if not isinstance(name, str) or not name:
        raise fail("name must be a non-empty string")
    return Profile(
        name=name,
        extension=extension,
        cnpg_name=cnpg_name,
        preload=preload,
        settings=clean_settings,
        background_workers=strings("background_workers"),
        smoke=smoke,
        data_setup=data_setup,
        data_check=data_check,
        module_name=optional_str("module_name"),
        module_version=optional_str("module_version"),
        ld_library_path=strings("ld_library_path"),
        source=source,
    )


def _step(item: Any, where: str, fail) -> SmokeStep:
    if not isinstance(item, dict) or not isinstance(item.get("sql"), str) or not item["sql"].strip():
        raise fail(f'{where}: needs sql = "..."')
    extra = set(item) - {"sql", "expect"}
    if extra:
        raise fail(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    expect = item.get("expect")
    if expect is not None and (not isinstance(expect, list) or not all(isinstance(r, list) for r in expect)):
        raise fail(f"{where}: expect must be a list of rows, each a list of values (e.g. [[5]])")
    return SmokeStep(item["sql"], expect)
