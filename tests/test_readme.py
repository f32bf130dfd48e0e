"""README.md and docs/*.md stay true: their Python examples run (each file's blocks in
order, in one namespace)."""

from __future__ import annotations

import re
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
