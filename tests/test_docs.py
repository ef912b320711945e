"""The repository documents itself: nothing in it sends a reader to a file
outside it, and every pointer into docs/ (`docs/x.md#anchor`, Markdown
links) leads to a file and heading that exist. No server needed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
TEXT = {".rs", ".py", ".pyi", ".md", ".json", ".sql", ".sh", ".toml"}

#: What would point outside the repository: a sibling directory's design
#: notes, or numbered sections of a document that is not here.
OUTSIDE = re.compile(r"\.\./shared|CONTRACT\.md|FACTS\.md|\bcontract\b|§\s?\d")
#: A document section cited by number, as RFCs are, is fine.
RFC = re.compile(r"RFC \d+ §\d")
POINTER = re.compile(r"(?<![\w/.-])((?:docs|bench|catalog)/[\w.-]+\.md)(?:#([\w-]+))?")
LINK = re.compile(r"\]\(([^)\s]+?\.md)?(?:#([\w-]+))?\)")


def files() -> Iterator[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    for name in out.splitlines():
        path = ROOT / name
        if path.suffix in TEXT and path.is_file() and path.name != "test_docs.py":
            yield path


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    seen: Dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"#{1,6} (.+)", line)
        if m and not in_code:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_nothing_points_outside_the_repository() -> None:
    found = []
    for path in files():
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(RFC.sub("", line)):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert found == [], "\n".join(found)


def pointers() -> Iterator[Tuple[str, Path, str]]:
    """(where, target file, anchor or "") for every pointer into a document."""
    for path in files():
        text = path.read_text(errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            for m in POINTER.finditer(line):
                yield where, ROOT / m.group(1), m.group(2) or ""
            if path.suffix == ".md":
                for m in LINK.finditer(line):
                    target = (path.parent / m.group(1)) if m.group(1) else path
                    if not m.group(1) or not m.group(1).startswith("http"):
                        yield where, target.resolve(), m.group(2) or ""


def test_every_pointer_into_the_documents_resolves() -> None:
    broken: List[str] = []
    cache: Dict[Path, Set[str]] = {}
    for where, target, anchor in pointers():
        if not target.is_file():
            broken.append(f"{where}: {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} does not exist")
            continue
        if anchor:
            if target not in cache:
                cache[target] = anchors(target)
            if anchor not in cache[target]:
                broken.append(f"{where}: {target.relative_to(ROOT)} has no heading #{anchor}")
    assert broken == [], "\n".join(broken)


def test_the_reference_covers_every_action() -> None:
    import json

    actions = json.loads((ROOT / "catalog" / "connector-catalog.json").read_text())["actions"]
    headings = anchors(ROOT / "docs" / "reference.md")
    assert set(actions) <= headings
