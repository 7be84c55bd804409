"""The documentation stays true to the repository.

README.md is a newcomer's first page and docs/ holds the rest, so both rot quietly: a file is
renamed and a link dangles, a section moves and a docstring still sends the reader to it by its
heading, a Makefile target or a management command is dropped and the docs still name it, a test
token is added and nobody learns of it. Each test below fails on one of these. They read files
only (no database, no broker).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import get_commands

from payments import simulator

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

# Directories that are not the project's own text: the virtualenv, caches, run-time data.
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "var",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".import_linter_cache",
}
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".yml",
    ".yaml",
    ".sh",
    ".toml",
    ".txt",
    ".html",
    ".js",
    ".css",
    ".lua",
    ".sql",
    ".cfg",
    ".ini",
    ".json",
}
TEXT_NAMES = {"Makefile", "Dockerfile", "run", ".env.example"}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# A file name (README, README.md or a docs/ Markdown file) and one or more headings in double quotes.
SECTION_REFERENCE = re.compile(r"\b(README(?:\.md)?|docs/[\w-]+\.md),?((?:\s+(?:#\s*)?\"[^\"\n]+\")+)")
QUOTED = re.compile(r"\"([^\"\n]+)\"")


def project_text_files() -> Iterator[Path]:
    """Every text file of the project, tracked or new (so a fresh file is checked before commit)."""
    for path in ROOT.rglob("*"):
        if any(part in SKIPPED_DIRS for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            yield path


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of a Markdown file outside fenced code blocks, numbered from 1."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def heading_texts(path: Path) -> list[str]:
    """A Markdown file's headings as a reader sees them (no backticks or emphasis marks)."""
    texts = []
    for _, line in prose_lines(path):
        match = HEADING.match(line)
        if match:
            texts.append(re.sub(r"[`*_]", "", match.group(2)).strip())
    return texts


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = []
    for char in heading.strip().lower():
        category = unicodedata.category(char)
        if char in "-_" or category[0] in "LN":
            kept.append(char)
        elif char == " ":
            kept.append("-")
    return "".join(kept)


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file, numbered as GitHub numbers repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for text in heading_texts(path):
        anchor = github_anchor(text)
        count = seen.get(anchor, 0)
        result.add(anchor if count == 0 else f"{anchor}-{count}")
        seen[anchor] = count + 1
    return result


def test_the_readme_stays_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines: keep it a newcomer's page (at most {README_MAX_LINES}) "
        "and move the detail into docs/"
    )


@pytest.mark.parametrize("document", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for number, line in prose_lines(document):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            linked = (document.parent / path_part).resolve() if path_part else document
            if not linked.exists():
                broken.append(f"line {number}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"line {number}: {target} (no heading with anchor #{anchor})")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_have_the_pages_the_readme_promises() -> None:
    readme = README.read_text(encoding="utf-8")
    for name in (
        "architecture",
        "api",
        "operations",
        "performance",
        "chaos",
        "web",
        "console",
        "security",
        "configuration",
    ):
        assert (ROOT / "docs" / f"{name}.md").exists(), name
        assert f"(docs/{name}.md" in readme, f"README.md does not link docs/{name}.md"


def test_section_references_name_an_existing_heading() -> None:
    """A section cited by its heading after the README's or a docs/ file's name is a heading there."""
    dangling = []
    headings: dict[Path, list[str]] = {}
    for path in project_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in SECTION_REFERENCE.finditer(text):
            name = match.group(1)
            target = README if name.startswith("README") else ROOT / name
            if not target.exists():
                dangling.append(f"{path.relative_to(ROOT)}: {name} does not exist")
                continue
            known = headings.setdefault(target, heading_texts(target))
            for wanted in QUOTED.findall(match.group(2)):
                if wanted not in known:
                    line = text.count("\n", 0, match.start()) + 1
                    dangling.append(f'{path.relative_to(ROOT)}:{line}: {name} has no heading "{wanted}"')
    assert not dangling, "\n".join(dangling)


def test_nothing_points_outside_the_repository() -> None:
    """The repository stands on its own: no notes kept beside it are cited."""
    outside = ["../" + "shared", "shared " + "folder", "DESIGN" + ".md"]
    found = []
    for path in project_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}: {word}" for word in outside if word in text]
    assert not found, "\n".join(found)


def documented_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"(?:`|^\s*)make ([a-z][\w-]*)", documented_text(), flags=re.MULTILINE))
    assert named, "the docs name no make target at all: the pattern is broken"
    assert not named - targets, f"named in the docs but not in the Makefile: {sorted(named - targets)}"


def test_every_management_command_the_docs_name_exists() -> None:
    named = set(re.findall(r"manage\.py ([a-z][a-z_]*)", documented_text()))
    assert "serve_embedded" in named and "audit_money" in named
    missing = named - set(get_commands())
    assert not missing, f"named in the docs but not a manage.py command: {sorted(missing)}"


def test_the_readme_lists_every_payment_test_token() -> None:
    simulated = {value for name, value in vars(simulator).items() if name.startswith("TOKEN_")}
    readme_tokens = set(re.findall(r"`(tok_[a-z_]+)`", README.read_text(encoding="utf-8")))
    assert simulated, "payments.simulator defines no TOKEN_* constant any more"
    assert simulated <= readme_tokens, f"tokens missing from README.md: {sorted(simulated - readme_tokens)}"
    assert readme_tokens - simulated == {"tok_ok"}, "README.md names a token the simulator does not know"


def test_diagrams_are_mermaid_blocks() -> None:
    """GitHub renders ```mermaid fences; each must start with a diagram type it knows."""
    kinds = ("flowchart", "graph", "sequenceDiagram", "stateDiagram", "stateDiagram-v2", "classDiagram")
    blocks = []
    for path in DOCS:
        blocks += [
            (path, block)
            for block in re.findall(r"^```mermaid\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)
        ]
    assert any(path == README for path, _ in blocks), "README.md has no mermaid diagram"
    for path, block in blocks:
        first = block.strip().split()[0]
        assert first in kinds, f"{path.relative_to(ROOT)}: a mermaid block starts with {first!r}"
