"""The documents stay true: every command they give for a project script takes its flags, every file and picture they
link to exists, and every function or class they name in a link to a script is defined there."""

import functools
import importlib
import os
import re
import shlex
import subprocess
import sys

import pytest
import tyro

from tests.helpers import REPO

DOCUMENTS = sorted([REPO / "README.md", REPO / "benchmark" / "README.md", *(REPO / "docs").glob("*.md")])
SCRIPTS = tuple(sorted(path.name for path in REPO.glob("*.py")))  # the algorithm files, at the top of the repository
COMMAND = re.compile(r"(?:python|uv run|torchrun[^\n`]*?) ((?:benchmark/|tests/)?\w+\.py)((?: [^;&|`#\n]*)?)")
LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")


def commands(document) -> list[tuple[str, list[str]]]:
    """(script, flags) of every command in the document that runs a project script; commands with shell variables
    are left out (their values are the shell's)."""
    found = []
    for script, rest in COMMAND.findall(document.read_text()):
        if "$" not in rest and (REPO / script).is_file():
            found.append((script, shlex.split(rest)))
    return found


@functools.cache
def help_text(script: str) -> str:
    return subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}).stdout


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_command_of_a_document_takes_its_flags(document):
    assert document.is_file(), f"{document} is missing"
    found = commands(document)
    for script, flags in found:
        if script in SCRIPTS:  # the script's own parser, on the command's flags, without training
            module = importlib.import_module(script[:-3])
            try:
                tyro.cli(module.Args, args=flags)
            except SystemExit as e:  # --help exits 0 once it has printed the flags
                if e.code == 0 and flags == ["--help"]:
                    continue
                pytest.fail(f"{document.name}: python {script} {' '.join(flags)}: tyro exits {e.code}")
        else:  # a benchmark tool: each flag is one its --help lists
            for flag in (f.split("=")[0] for f in flags if f.startswith("--")):
                assert flag in help_text(script), f"{document.name}: {script} has no {flag}"
    if document.name == "README.md" and document.parent == REPO:
        assert {script for script, _ in found} >= set(SCRIPTS), "the README runs every script"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO)))
def test_every_link_of_a_document_reaches_a_file_and_names_what_is_there(document):
    for text, target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address, or a heading of the same page
        path = (document.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{document.name} links to {target}, which does not exist"
        name = re.fullmatch(r"`(\w+)(\(\))?`", text)
        if name and path.suffix == ".py":
            definition = rf"^\s*(def {name[1]}\(|class {name[1]}\b)"
            assert re.search(definition, path.read_text(), re.M), f"{document.name}: {name[1]} is not in {target}"
