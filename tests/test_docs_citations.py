"""Every citation of `docs/official_behaviours.md §N` in the repository names a section that exists there, and no code
cites a document outside the repository ("spec §...")."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC = REPO_ROOT / "docs" / "official_behaviours.md"
CITING_FOLDERS = ("openseed", "tools", "tests", "configs", "docs", "datasets", "scripts")
SUFFIXES = (".py", ".md", ".yaml")
# results of older versions cite "spec §": the reader that upgrades them, and its test, name it on purpose
LEGACY_READERS = ("openseed/evaluation/fingerprint.py", "tests/reliability/test_stale_results.py",
                  "tests/test_docs_citations.py")


def doc_sections(text: str) -> set[str]:
    """Section numbers of the document: its `##`/`###` headings ("9", "9.1", "5.6") and the decisions of §0 ("0.3")."""
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", text, flags=re.MULTILINE))
    decisions = text.split("## 0.", 1)[1].split("\n## ", 1)[0]
    sections.update(f"0.{n}" for n in re.findall(r"^(\d+)\. ", decisions, flags=re.MULTILINE))
    return sections


def cited_sections(line: str) -> list[str]:
    """Section numbers cited after the document's name on one line ("§5.2-5.3" gives 5.2 and 5.3)."""
    after = line.split("official_behaviours.md", 1)[1]
    return [n for start, end in re.findall(r"§(\d+(?:\.\d+)?)(?:[-–](\d+(?:\.\d+)?))?", after) for n in (start, end) if n]


def repository_lines():
    for folder in CITING_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix in SUFFIXES and "fixtures" not in path.parts and ".venv" not in path.parts:
                for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    yield path.relative_to(REPO_ROOT).as_posix(), number, line


def test_section_and_citation_readers():
    text = "## 0. D\n\n1. one\n2. two\n\n## 9. Post\n\n### 9.1 Panoptic\n"
    assert doc_sections(text) == {"0", "0.1", "0.2", "9", "9.1"}
    assert cited_sections("(docs/official_behaviours.md §5.2-5.3, §14 item 28; §0.1)") == ["5.2", "5.3", "14", "0.1"]


def test_every_citation_names_an_existing_section():
    sections = doc_sections(DOC.read_text(encoding="utf-8"))
    missing = [f"{path}:{number}: §{n}" for path, number, line in repository_lines() if "official_behaviours.md" in line
               for n in cited_sections(line) if n not in sections]
    assert missing == []


def test_no_code_cites_a_document_outside_the_repository():
    outside = [f"{path}:{number}" for path, number, line in repository_lines()
               if re.search(r"\bspec §|spec\.md|shared/design", line) and path not in LEGACY_READERS]
    assert outside == []
