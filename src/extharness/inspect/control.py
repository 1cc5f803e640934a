"""PostgreSQL extension control files, parsed by PostgreSQL's own rules.

Mirrors ``parse_extension_control_file()`` in src/backend/commands/extension.c and the
configuration-file lexer it uses (guc-file.l): ``name [=] value`` lines, ``#`` comments,
quoted strings with ``''`` and backslash escapes, unquoted words, the parameter list
PostgreSQL 18 accepts, and the same error wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KNOWN_PARAMETERS = (
    "directory",
    "default_version",
    "module_pathname",
    "comment",
    "schema",
    "relocatable",
    "superuser",
    "trusted",
    "encoding",
    "requires",
    "no_relocate",
)
PRIMARY_ONLY = ("directory", "default_version")

# guc-file.l tokens
_LETTER = r"[A-Za-z_\x80-\xff]"
_LETTER_OR_DIGIT = r"[A-Za-z_0-9\x80-\xff]"
_ID = rf"{_LETTER}{_LETTER_OR_DIGIT}*"
_TOKEN = re.compile(
    rf"""
    (?P<ws>[ \t\r]+)
  | (?P<comment>\#[^\n]*)
  | (?P<eol>\n)
  | (?P<string>'(?:[^'\\\n]|\\.|'')*')
  | (?P<qualified>{_ID}\.{_ID})
  | (?P<unquoted>{_LETTER}(?:{_LETTER_OR_DIGIT}|[-._:/])*)
  | (?P<real>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[Ee][-+]?\d+)?[a-zA-Z]*)
  | (?P<equals>=)
    """,
    re.VERBOSE,
)

_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


class ControlFileError(ValueError):
    """The control file would make PostgreSQL raise an error; the text is PostgreSQL's."""


def deescape(quoted: str) -> str:
    """DeescapeQuotedString(): strip quotes, undo ``''`` and backslash escapes."""
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if nxt in "01234567":
                digits = re.match(r"[0-7]{1,3}", body[i + 1 :])
                assert digits
                out.append(chr(int(digits.group(0), 8) & 0xFF))
                i += 1 + len(digits.group(0))
                continue
            out.append(nxt)
            i += 2
            continue
        if ch == "'" and i + 1 < len(body) and body[i + 1] == "'":
            out.append("'")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_config_lines(text: str, filename: str) -> list[tuple[str, str, int]]:
    """Tokenise like ParseConfigFp(): returns (name, value, line) items in order."""
    items: list[tuple[str, str, int]] = []
    line = 1
    pos = 0
    state: list[tuple[str, str]] = []  # tokens of the current line

    def syntax_error(at_line: int, near: str | None) -> ControlFileError:
        if near is None:
            return ControlFileError(f'syntax error in file "{filename}" line {at_line}, near end of line')
        return ControlFileError(f'syntax error in file "{filename}" line {at_line}, near token "{near}"')

    def finish_line() -> None:
        if not state:
            return
        kinds = [k for k, _ in state]
        if kinds[0] not in ("unquoted", "qualified"):
            raise syntax_error(line, state[0][1])
        name = state[0][1]
        rest = state[1:]
        if rest and rest[0][0] == "equals":
            rest = rest[1:]
        if not rest:
            raise syntax_error(line, None)
        kind, value = rest[0]
        if kind not in ("string", "unquoted", "qualified", "real"):
            raise syntax_error(line, value)
        if len(rest) > 1:
            raise syntax_error(line, rest[1][1])
        items.append((name, deescape(value) if kind == "string" else value, line))
        state.clear()

    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise syntax_error(line, text[pos])
        kind = match.lastgroup or ""
        value = match.group(0)
        pos = match.end()
        if kind in ("ws", "comment"):
            continue
        if kind == "eol":
            finish_line()
            line += 1
            continue
        state.append((kind, value))
    finish_line()
    return items


def parse_bool(value: str) -> bool | None:
    """parse_bool(): true/false/yes/no/on/off/1/0 and unique prefixes, any case."""
    v = value.strip().lower()
    if v in ("1", "0"):
        return v == "1"
    if not v:
        return None
    matches = {result for word, result in _BOOL_WORDS.items() if word.startswith(v) and (len(v) >= 2 or v not in "o")}
    # "o" is ambiguous between on/off, as in PostgreSQL
    if v == "o":
        return None
    return matches.pop() if len(matches) == 1 else None


def split_identifier_list(value: str) -> list[str] | None:
    """SplitIdentifierString(value, ','): lower-case unquoted names, keep quoted ones."""
    names: list[str] = []
    pos = 0
    text = value
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return names if not names else None  # a trailing comma is an error
        if text[pos] == '"':
            end = pos + 1
            buf = []
            while True:
                nxt = text.find('"', end)
                if nxt < 0:
                    return None
                buf.append(text[end:nxt])
                if nxt + 1 < len(text) and text[nxt + 1] == '"':
                    buf.append('"')
                    end = nxt + 2
                    continue
                pos = nxt + 1
                break
            name = "".join(buf)
            if not name:
                return None
        else:
            start = pos
            while pos < len(text) and text[pos] not in ",\"" and not text[pos].isspace():
                pos += 1
            name = text[start:pos].lower()
            if not name:
                return None
        names.append(name[:63])
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return names
        if text[pos] != ",":
            return None
        pos += 1


def check_valid_name(kind: str, name: str) -> str | None:
    """check_valid_extension_name() / check_valid_version_name(): the error, or None."""
    what = "extension" if kind == "extension" else "version"
    if not name:
        return f'invalid {what} name: "{name}" ({"Extension" if what == "extension" else "Version"} names must not be empty.)'
    if "--" in name:
        return f'invalid {what} name: "{name}" (names must not contain "--")'
    if name.startswith("-") or name.endswith("-"):
        return f'invalid {what} name: "{name}" (names must not begin or end with "-")'
    if "/" in name or "\\" in name:
        return f'invalid {what} name: "{name}" (names must not contain directory separator characters)'
    return None


@dataclass
class ControlFile:
    """An extension's control parameters after PostgreSQL's parsing (defaults filled in)."""

    name: str
    directory: str | None = None
    default_version: str | None = None
    module_pathname: str | None = None
    comment: str | None = None
    schema: str | None = None
    relocatable: bool = False
    superuser: bool = True
    trusted: bool = False
    encoding: str | None = None
    requires: list[str] = field(default_factory=list)
    no_relocate: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # parameter -> line, for messages


def parse_control(text: str | bytes, name: str, filename: str | None = None, version: str | None = None,
                  base: ControlFile | None = None) -> ControlFile:
    """Parse a primary (``version`` None) or secondary (``<ext>--<version>.control``) file.

    A secondary file's settings override ``base`` (the primary), as in PostgreSQL.
    """
    filename = filename or (f"{name}--{version}.control" if version else f"{name}.control")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    if "\x00" in text:
        raise ControlFileError(f'syntax error in file "{filename}": it contains a NUL byte')
    control = ControlFile(name=name) if base is None else ControlFile(**{**base.__dict__, "lines": dict(base.lines)})
    for key, value, line in parse_config_lines(text, filename):
        if version is not None and key in PRIMARY_ONLY:
            raise ControlFileError(f'parameter "{key}" cannot be set in a secondary extension control file')
        control.lines[key] = line
        if key == "directory":
            control.directory = value
        elif key == "default_version":
            control.default_version = value
        elif key == "module_pathname":
            control.module_pathname = value
        elif key == "comment":
            control.comment = value
        elif key == "schema":
            control.schema = value
        elif key in ("relocatable", "superuser", "trusted"):
            parsed = parse_bool(value)
            if parsed is None:
                raise ControlFileError(f'parameter "{key}" requires a Boolean value')
            setattr(control, key, parsed)
        elif key == "encoding":
            control.encoding = value
        elif key in ("requires", "no_relocate"):
            names = split_identifier_list(value)
            if names is None:
                raise ControlFileError(f'parameter "{key}" must be a list of extension names')
            setattr(control, key, names)
        else:
            raise ControlFileError(f'unrecognized parameter "{key}" in file "{filename}"')
    if control.relocatable and control.schema is not None:
        raise ControlFileError('parameter "schema" cannot be specified when "relocatable" is true')
    return control
