"""``action.yml``, the composite GitHub Action users put in their workflows, is valid and runs
only what the wheel installs: every ``run:`` step calls ``extharness``, ``extharness-gate`` or
``python -m pip`` (besides shell builtins), with options those commands accept, and every
``EXTHARNESS_*`` variable it sets is an option of the harness.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from extharness import gate
from extharness.cli import TIERS
from extharness.config import OPTIONS, env_name

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
SRC = ROOT / "src"

#: Commands a step may run: the wheel's (python only as ``python -m pip``) and bash builtins.
WHEEL_COMMANDS = {"extharness", "extharness-gate", "python"}
BUILTINS = {"echo", "exit", "[", "test", "read", "printf", "true", "false", ":"}
KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "do", "done", "while", "until", "!", "{", "}"}
SEPARATORS = {";", "&&", "||", "|", "(", ")", ";;", "&", "\n"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _action() -> dict:
    return yaml.safe_load(ACTION.read_text())


def _steps() -> list[dict]:
    return _action()["runs"]["steps"]


def _scripts() -> list[str]:
    return [step["run"] for step in _steps() if "run" in step]


def commands(script: str) -> list[list[str]]:
    """The simple commands of a bash ``script`` (each as its words), for the subset of bash the
    action uses: lists, pipelines, if/for/while, ``case`` (patterns are not commands)."""
    lines = [line for line in script.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")]
    lexer = shlex.shlex("\n".join(lines), posix=True, punctuation_chars=";&|()")
    lexer.whitespace = " \t"  # newlines end commands
    lexer.commenters = ""  # `${x#*=}` is no comment; comment lines went above
    lexer.wordchars += "${}[]:,+#%@"
    found: list[list[str]] = []
    current: list[str] = []
    in_case = 0  # 1 after `case`: the word, `in`, then patterns up to `)`
    pattern = False
    loop_words = False  # after `for`: the name and the words, up to `do`
    redirect = False  # after `<` or `>`: its target, which is no word of the command
    for token in lexer:
        if token in ("<", ">"):
            redirect = True
            continue
        if redirect:
            redirect = False
            continue
        if loop_words:
            loop_words = token != "do"
            continue
        if in_case and pattern:
            if token == ")":
                pattern = False
            elif token == "esac":
                in_case, pattern = in_case - 1, False
            continue
        if token in SEPARATORS:
            if current:
                found.append(current)
                current = []
            if token == ";;":
                pattern = True
            continue
        if not current and token == "for":
            loop_words = True
            continue
        if not current and token == "case":
            in_case += 1
            current = ["case"]
            continue
        if current == ["case"] or (current[:1] == ["case"] and token == "in"):
            if token == "in":
                current, pattern = [], True
            else:
                current.append(token)
            continue
        if not current and token == "esac":
            in_case -= 1
            continue
        if not current and (token in KEYWORDS or ASSIGNMENT.match(token)):
            continue
        current.append(token)
    if current:
        found.append(current)
    return found


def test_the_command_reader_sees_commands_not_case_patterns() -> None:
    script = (
        'x=""\necho "$x" >> "$OUT"\ncase "$T" in *sql*) x="sql" ;; other) echo b ;; esac\n'
        'if [ -n "$V" ]; then\n  cat f | grep x\nfi\nfor o in a b; do printf "%s" "$o"; done\n'
        'python -m pip install "p${x:+[$x]}" \\\n  --quiet\n'
    )
    words = [c[0] for c in commands(script)]
    assert words == ["echo", "echo", "[", "cat", "grep", "printf", "python"], words
    assert commands(script)[0] == ["echo", "$x"]
    assert commands(script)[-1] == ["python", "-m", "pip", "install", "p${x:+[$x]}", "--quiet"]


def test_action_validates_against_the_github_action_schema() -> None:
    found = Path(sys.executable).with_name("check-jsonschema")
    if not found.exists():
        pytest.skip("check-jsonschema not installed (pip install check-jsonschema==0.39.0)")
    result = subprocess.run(
        [str(found), "--builtin-schema", "vendor.github-actions", str(ACTION)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_is_composite_with_bash_steps() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    for step in _steps():
        assert "run" in step or step["uses"].startswith("actions/setup-python@"), step
        if "run" in step:
            assert step["shell"] == "bash", step.get("name")


def test_every_step_runs_only_what_the_wheel_installs() -> None:
    for script in _scripts():
        assert "$(" not in script and "`" not in script, "no command substitution: each command stays visible here"
        for words in commands(script):
            assert words[0] in WHEEL_COMMANDS | BUILTINS, f"{words[0]}: not a command the extharness wheel installs"
            if words[0] == "python":
                assert words[1:3] == ["-m", "pip"], f"python only as python -m pip: {words}"


def _options(words: list[str]) -> list[str]:
    """The ``--options`` of a command line (``${V:+--opt "$V"}`` counts as ``--opt``)."""
    found = []
    for word in words:
        word = re.sub(r"^\$\{\w+:\+", "", word)
        if word == "--":
            break
        if word.startswith("-"):
            found.append(word.split("=", 1)[0])
    return found


def _invocations(name: str) -> list[list[str]]:
    return [words for script in _scripts() for words in commands(script) if words[0] == name]


def test_the_gate_gets_only_options_it_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gate.main(["--help"])
    helptext = capsys.readouterr().out
    (words,) = _invocations("extharness-gate")
    assert _options(words), words
    for option in _options(words):
        assert re.search(rf"(^|[\s\[,]){re.escape(option)}\b", helptext), f"extharness-gate has no {option}"


def test_check_gets_only_options_it_accepts() -> None:
    # the installed command's own help: the harness's options, then pytest's (-m, --junit-xml)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    probe = "import sys; from extharness.cli import main; sys.exit(main(['check', '--help']))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (words,) = _invocations("extharness")
    assert words[1] == "check"
    assert _options(words), words
    for option in _options(words):
        assert re.search(rf"(^|[\s,]){re.escape(option)}\b", result.stdout), f"extharness check has no {option}"


def test_pip_installs_extharness_with_the_tier_extras() -> None:
    (words,) = _invocations("python")
    assert words[3] == "install", words
    (requirement,) = [w for w in words[4:] if not w.startswith("-")]
    assert requirement.startswith("extharness${extras:+[$extras]}"), requirement
    setup = next(step for step in _steps() if step.get("id") == "setup")["run"]
    for tier in TIERS[1:]:
        assert f"*{tier}*)" in setup, f"the {tier} tier's extra is not installed when tiers name it"


def test_every_extharness_variable_is_an_option_and_every_input_is_used() -> None:
    known = {env_name(o.dest) for o in OPTIONS}
    steps_text = ACTION.read_text()
    for step in _steps():
        for name in step.get("env", {}):
            if name.startswith("EXTHARNESS_") and name != "EXTHARNESS_VERSION":
                assert name in known, f"{name}: no such harness option"
    for name in _action()["inputs"]:
        assert f"inputs.{name}" in steps_text.split("\nruns:", 1)[1], f"input {name} is not used by any step"


def test_outputs_are_the_report_paths() -> None:
    outputs = _action()["outputs"]
    assert set(outputs) == {"findings-json", "summary-md", "junitxml"}
    for name, output in outputs.items():
        assert output["value"] == f"${{{{ steps.setup.outputs.{name} }}}}"
