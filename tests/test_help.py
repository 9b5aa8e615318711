"""The first minute of a new user: `--help` that teaches, `--version`, `run --list`, the console
script, the README's commands as printed, and the README's test command surviving a missing
browser. All fast: nothing here starts a server or a cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.metadata
import io
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import harness
from harness.cli import build_parser, main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
# The README and the documentation site's pages: every command they show is checked alike.
PAGES = (README, *(page.read_text() for page in sorted((REPO / "docs").glob("*.md"))))
HEAVY_MODULES = ("prefect", "prefect_dask", "dask", "distributed", "pandas", "numpy", "scipy", "matplotlib")
HELP_TIMEOUT_S = 60  # a cold interpreter on a loaded 2-core machine; the help itself is milliseconds


@pytest.fixture(autouse=True)
def _keep_signal_handlers(keep_signal_handlers):
    """main() installs signal handlers for the CLI process (conftest.keep_signal_handlers)."""


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


SUBCOMMANDS = sorted(_subparsers(build_parser()))


# ---------------------------------------------------------------- --help


def _assert_teaches(text: str, command: str) -> None:
    assert "The command line: the only place" not in text  # no internal docstring
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    invocations = [line.strip() for line in examples.splitlines() if line.strip().startswith("harness ")]
    assert 2 <= len(invocations) <= 3, examples
    assert all(line.startswith(f"harness {command}".rstrip()) for line in invocations), invocations
    assert "harness run --list" in text  # where the bundled workloads are listed
    codes = "\n" + text.split("exit codes:\n", 1)[1].split("\n\n", 1)[0]
    for code in ("0 ", "1 ", "2 ", "130 "):
        assert f"\n  {code}" in codes, code
    assert "where results go:" in text and "results/<workload name>/<run id>/" in text


def test_top_level_help_teaches(capsys):
    code, out, _ = _cli(["--help"], capsys)
    assert code == 0
    assert out.startswith("usage: harness ")
    purpose = out.split("\n\n")[1].splitlines()[0]
    assert purpose.startswith("Benchmark ") and len(purpose) <= 120
    _assert_teaches(out, "")
    for sub in SUBCOMMANDS:
        assert f"\n    {sub} " in out  # each subcommand with its one-line purpose
    # the bundled workloads by name, found on disk
    for path in sorted((REPO / "workloads").glob("*.toml")) + sorted((REPO / "workloads/bench").glob("*.toml")):
        assert path.name in out, path


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_help_teaches(command, capsys):
    code, out, _ = _cli([command, "--help"], capsys)
    assert code == 0
    assert out.startswith(f"usage: harness {command} ")
    purpose = out.split("\n\n")[1]
    assert "\n" not in purpose.strip() and purpose.strip(), purpose  # one line
    _assert_teaches(out, command)


def test_version(capsys):
    code, out, _ = _cli(["--version"], capsys)
    assert code == 0
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert out == f"harness {pyproject['project']['version']}\n"
    assert harness.__version__ == pyproject["project"]["version"]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["run", "--list"], ["--version"]])
def test_help_imports_no_prefect_dask_or_pandas(args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert "harness" in imported  # importtime did report
    assert not imported & set(HEAVY_MODULES), imported & set(HEAVY_MODULES)


# ---------------------------------------------------------------- run --list


def _bundled() -> list[Path]:
    return sorted((REPO / "workloads").glob("*.toml")) + sorted((REPO / "workloads/bench").glob("*.toml"))


def test_run_list_describes_every_bundled_workload(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, _ = _cli(["run", "--list"], capsys)  # no WORKLOAD needed
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(_bundled()) >= 2
    for path, line in zip(_bundled(), lines):
        shown, summary = line.split(None, 1)
        assert shown == str(path.relative_to(REPO))
        first_words = tomllib.loads(path.read_text())["description"].split()[:3]
        assert summary.startswith(" ".join(first_words)), (line, first_words)


def test_run_list_from_another_directory_finds_the_checkout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _cli(["run", "--list"], capsys)
    assert code == 0
    assert str(REPO / "workloads" / "small.toml") in out


def test_run_list_summaries_without_a_description(tmp_path, capsys, monkeypatch):
    """The leading comment when there is no `description`, else name and item count; a broken
    file still lists, saying so."""
    folder = tmp_path / "workloads"
    folder.mkdir()
    (folder / "commented.toml").write_text('# Two items of waiting.\n# Second line.\nname = "c"\n')
    (folder / "bare.toml").write_text('name = "bare"\nseed = 1\n[items]\ncount = 1_500\n')
    (folder / "broken.toml").write_text('name = "broken"\n[items\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = _cli(["run", "--list"], capsys)
    assert code == 0
    found = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in out.splitlines()}
    assert found["workloads/commented.toml"] == "Two items of waiting"
    assert found["workloads/bare.toml"] == "bare: 1,500 items"
    assert found["workloads/broken.toml"].startswith("(not valid TOML:")


def test_run_still_requires_a_workload(capsys):
    code, _, err = _cli(["run"], capsys)
    assert code == 2 and "workload" in err


# ---------------------------------------------------------------- the console script


def test_console_script_entry_point_resolves():
    """pyproject's [project.scripts] entry loads as pip's wrapper loads it, and the wrapper's
    `sys.exit(entry())` gives the same output and exit codes as `python -m harness`."""
    value = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["harness"]
    entry = importlib.metadata.EntryPoint(name="harness", value=value, group="console_scripts")
    assert entry.load() is main
    wrapper = f"import sys; from {entry.module} import {entry.attr}; sys.exit({entry.attr}())"
    for args, expected in ((["--version"], 0), (["run", "--list"], 0), (["frobnicate"], 2)):
        as_script = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=REPO,
                                   capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
        as_module = subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO,
                                   capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
        assert as_script.returncode == as_module.returncode == expected, (args, as_script.stderr)
        assert as_script.stdout == as_module.stdout and as_script.stderr == as_module.stderr


# ---------------------------------------------------------------- the README's commands, as printed


FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
HARNESS_PREFIXES = ((".venv/bin/harness",), (".venv/bin/python", "-m", "harness"))
PLACEHOLDER = re.compile(r"^\[|^[A-Z][A-Z0-9_]*(\.toml)?\]?$")


def _readme_code() -> tuple[list[str], list[str]]:
    """(shell lines from ```sh blocks and inline code spans, synopsis lines from ```text blocks) of
    the README and every docs page."""
    shell, synopsis = [], []
    for page in PAGES:
        for lang, body in FENCE.findall(page):
            # a line ending in a backslash, or (synopsis) an indented line, continues the one before
            lines = re.sub(r"\\?\n(?=[ \t])|\\\n", " ", body).splitlines()
            (shell if lang == "sh" else synopsis if lang == "text" else []).extend(lines)
        shell += re.findall(r"`([^`\n]+)`", FENCE.sub("", page))
    return shell, synopsis


def _commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, with a `for VAR in GLOB; do ... $VAR` expanded."""
    lexer = shlex.shlex(line.split(" #")[0], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    redirect = False  # the word after > or < is a file, not an argument
    for token in lexer:
        if token in (";", "&&", "||", "|", "&"):
            segments.append([])
        elif token in (">", ">>", "<"):
            redirect = True
        elif redirect:
            redirect = False
        else:
            segments[-1].append(token)
    loop: dict[str, list[str]] = {}
    commands = []
    for words in filter(None, segments):
        if words[0] == "for" and words[2] == "in":
            loop = {f"${words[1]}": [p for pattern in words[3:] for p in sorted(glob.glob(pattern, root_dir=REPO))]}
            continue
        if words[0] == "do":
            words = words[1:]
        for var, values in loop.items():
            if var in words:
                commands += [[value if w == var else w for w in words] for value in values]
                break
        else:
            commands.append(words)
    return commands


def _harness_args(words: list[str]) -> list[str] | None:
    for prefix in HARNESS_PREFIXES:
        if tuple(words[: len(prefix)]) == prefix:
            return words[len(prefix):]
    return None


def _readme_harness_commands() -> tuple[list[list[str]], list[list[str]]]:
    """(runnable argument lists, synopsis argument lists with placeholders)."""
    shell, synopsis = _readme_code()
    runnable, placeholders = [], []
    for line in shell:
        for words in _commands(line):
            args = _harness_args(words)
            if args:  # [] is the program named in prose ("... is the same command"), not run
                (placeholders if any(PLACEHOLDER.match(w) for w in args) else runnable).append(args)
    for line in synopsis:
        args = _harness_args(line.split("#")[0].split())
        if args is not None:
            placeholders.append(args)
    return runnable, placeholders


def test_readme_uses_the_venv_for_every_command():
    """Bare `python`, `harness`, `prefect` or `dask` would run whatever is on PATH, not the venv.
    (Inline spans may name `prefect server start` as what the harness itself runs.)"""
    shell, synopsis = _readme_code()
    fenced = [line for page in PAGES for lang, body in FENCE.findall(page) if lang in ("sh", "text")
              for line in body.splitlines()]
    venv = r"(?<![\w/.])"
    bare = [line for line in shell + synopsis if re.search(venv + r"(python3? (-m )?(harness|tests/)|(?<!-m )harness (run|report|compare|table)\b)", line)]
    bare += [line for line in fenced if re.search(venv + r"(prefect server|dask (scheduler|worker))", line)]
    assert bare == [], "README commands must use .venv/bin/...: " + "; ".join(bare)


def test_readme_harness_commands_parse():
    """Each README command that runs harness parses with today's parser, and names workload files
    that exist: a renamed flag, subcommand or workload file fails here."""
    runnable, _ = _readme_harness_commands()
    assert len(runnable) >= 8, runnable  # the install line, the bench loop (8 files), own cluster, ...
    parser = build_parser()
    for args in runnable:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parsed = parser.parse_args(args)
            except SystemExit as exc:  # --help, --version, run --list exit 0 after printing
                assert exc.code == 0, (args, err.getvalue())
                continue
        if parsed.command == "run":
            assert (REPO / parsed.workload).is_file(), f"README runs a missing workload: {args}"


def test_readme_synopsis_names_real_subcommands_and_flags():
    _, placeholders = _readme_harness_commands()
    assert len(placeholders) >= 4, placeholders
    commands = _subparsers(build_parser())
    for args in placeholders:
        flags = {re.sub(r"[\[\]]", "", w).split("=")[0] for w in args if w.lstrip("[").startswith("--")}
        if args[0].startswith("--"):
            known = set(build_parser()._option_string_actions)
        else:
            assert args[0] in commands, args
            known = set(commands[args[0]]._option_string_actions)
        assert flags <= known, (args, flags - known)


# ---------------------------------------------------------------- the test command without a browser


TEST_SCRIPT = "scripts/test.sh"


def _readme_test_command() -> str:
    """The one line of README's fenced ```sh blocks that runs the test script."""
    [command] = [line for lang, body in FENCE.findall(README) if lang == "sh" for line in body.splitlines()
                 if TEST_SCRIPT in line]
    return command


def test_ci_runs_exactly_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().rstrip("\n").splitlines()
    assert ci[-1] == _readme_test_command() == f"bash {TEST_SCRIPT}"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("apt", ["fails", "absent"])
def test_test_command_goes_on_when_chromium_cannot_be_installed(tmp_path, apt):
    """No chromium on PATH and apt-get failing as it does without root (exit 100), or missing:
    the test script says so in one line, then makes the venv, builds the docs and runs the suite.
    It runs from a copy of the script in an empty checkout; python3 is a stub that makes a stub
    venv logging what it is asked to run."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    if apt == "fails":
        _stub(stubs, "apt-get", 'echo "E: Could not open lock file (13: Permission denied)" >&2; exit 100')
    log = tmp_path / "log"
    # python3 -m venv .venv: a stub venv whose programs only log their arguments (echo is a
    # shell builtin: PATH holds nothing but the stubs and what the script's own lines need)
    tool = f'#!/bin/sh\necho "$0 $*" >> {log}\n'
    (stubs / "python3").write_text(
        f"#!{sys.executable}\nimport os, pathlib\nbin = pathlib.Path('.venv/bin')\nbin.mkdir(parents=True)\n"
        f"for name in ('pip', 'python', 'mkdocs'):\n    (bin / name).write_text({tool!r})\n    os.chmod(bin / name, 0o755)\n")
    (stubs / "python3").chmod(0o755)
    (stubs / "bash").write_text(tool)  # `bash .ci/prefect-matrix.sh`: logged, not run
    (stubs / "bash").chmod(0o755)
    _stub(stubs, "dirname", 'echo "${1%/*}"')  # the script's `cd "$(dirname "$0")/.."`
    work = tmp_path / "checkout"
    (work / "scripts").mkdir(parents=True)
    (work / TEST_SCRIPT).write_text((REPO / TEST_SCRIPT).read_text())
    proc = subprocess.run(["/bin/bash", TEST_SCRIPT], cwd=work,
                          env={"PATH": str(stubs), "HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=HELP_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    said = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(said) == 1 and "chromium could not be installed" in said[0], said
    assert log.read_text().splitlines() == [".venv/bin/pip install -e .[test,docs]", f"{stubs}/bash .ci/prefect-matrix.sh",
                                            ".venv/bin/mkdocs build --strict --quiet", ".venv/bin/python -m pytest -q"]
