"""README.md and docs/*.md stay true: their Python examples run (each file's blocks in
order, in one namespace)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
DOCS = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{k}" for k in range(len(BLOCKS))])
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples may write files
    exec(compile(code, str(README), "exec"), {})


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_docs_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
        exec(compile(code, str(doc), "exec"), namespace)


def test_docs_links_resolve() -> None:
    """Every relative link in README.md and docs/ points at a file that exists."""
    for page in (README, *DOCS):
        for target in re.findall(r"\]\(([^)#:]+)\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def _shell_commands(page: Path, program: str) -> list[list[str]]:
    """Every ``program ...`` command in the page's bash blocks, as argv after the program
    (``&&`` chains split, comments and redirections dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(re.split(r"\s#\s", part)[0].split(">")[0])
                if words and Path(words[0]).name == program:
                    commands.append(words[1:])
    return commands


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_docs_lstmkit_commands_parse(page: Path) -> None:
    """Every ``lstmkit`` command in the docs is accepted by the command line as it is
    (flags, choices, shape and implementation names)."""
    from lstmkit.cli import build_parser

    for argv in _shell_commands(page, "lstmkit"):
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{page.name}: lstmkit {' '.join(argv)} is refused")


def test_docs_install_lines_name_real_extras() -> None:
    """Every ``pip install`` of lstmkit with extras names extras that pyproject.toml has."""
    tomllib = pytest.importorskip("tomllib")
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    named = []
    for page in (README, *DOCS):
        named += re.findall(r"(?:lstmkit|\.)\[([a-z,]+)\]", page.read_text())
    assert named, "no install line with extras found"
    for group in named:
        assert set(group.split(",")) <= extras, group
