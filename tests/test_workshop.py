"""The workshop route (book/workshop.md) and the "time to learn" of every chapter agree.

The route names chapter sections in italics; a section renamed in a chapter must be renamed
in the route too, or this test fails. The minutes of the route add up to the session's 90.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
WORKSHOP = BOOK / "workshop.md"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]-*.md"))
SESSION_MINUTES = 90
TIME_LINE = re.compile(r"^\*\*Time to learn:\*\* about (\d+) minutes\b", re.M)
ROW = re.compile(r"^\|(.+)\|\s*$", re.M)
LINKED_CHAPTER = re.compile(r"\[[^\]]+\]\((\d\d-[\w-]+)\)")
ITALIC = re.compile(r"(?<![*\w])\*([^*]+)\*(?![*\w])")


def _tables() -> list[list[list[str]]]:
    """Every markdown table of the workshop page: rows of stripped cells, header first."""
    tables, current = [], []
    for line in WORKSHOP.read_text().splitlines() + [""]:
        match = ROW.match(line)
        if match:
            cells = [c.strip() for c in match.group(1).split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def _table(first_header: str) -> list[list[str]]:
    found = [t for t in _tables() if t[0][0] == first_header]
    assert len(found) == 1, f"workshop.md needs one table starting with {first_header!r}"
    return found[0]


# Sections every chapter has (the template's), which the route need not name.
TEMPLATE_SECTIONS = {"What you will learn", "Prerequisites", "Summary", "References"}


def _prose(chapter: str) -> str:
    """A chapter's text without its code cells (a `# comment` there is not a heading)."""
    return re.sub(r"```.*?```", "", (BOOK / f"{chapter}.md").read_text(), flags=re.S)


def _headings(chapter: str) -> set[str]:
    return set(re.findall(r"^#{2,3} (.+?)\s*$", _prose(chapter), re.M))


def test_workshop_page_is_in_the_toc():
    assert "workshop" in parse_toc_yaml(BOOK / "_toc.yml")


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_chapter_has_one_time_to_learn_near_the_top(md: Path):
    text = md.read_text()
    found = TIME_LINE.findall(text)
    assert len(found) == 1, f"{md.name}: one '**Time to learn:** about N minutes' line"
    position = TIME_LINE.search(text).start()
    assert position < text.index("\n## What you will learn"), f"{md.name}: not near the top"


def test_time_to_learn_table_matches_the_chapters():
    rows = _table("Chapter")[1:]
    table = {}
    for row in rows:
        chapter = LINKED_CHAPTER.search(row[0])
        minutes = re.fullmatch(r"(\d+) min", row[1])
        assert chapter and minutes, f"bad row {row}"
        table[chapter.group(1)] = int(minutes.group(1))
    assert list(table) == [p.stem for p in CHAPTERS], "one row per chapter, in order"
    for md in CHAPTERS:
        (line,) = TIME_LINE.findall(md.read_text())
        assert int(line) == table[md.stem], f"{md.name} says {line} min, the table {table[md.stem]}"
    total = sum(table.values())
    stated = re.search(r"takes about (\w+)(\s+and\s+a\s+half)?\s+hours", WORKSHOP.read_text())
    assert stated, "the page states the total time"
    words = {"three": 3, "four": 4, "five": 5, "six": 6}
    hours = words[stated.group(1)] + (0.5 if stated.group(2) else 0)
    assert abs(total / 60 - hours) <= 0.25, f"the chapters add up to {total} min, not {hours} h"


def test_route_fits_the_session_and_names_real_sections():
    rows = _table("Minutes")[1:]
    assert sum(int(row[0]) for row in rows) == SESSION_MINUTES
    seen = []
    for _minutes, chapter_cell, read, skip in rows:
        chapter = LINKED_CHAPTER.search(chapter_cell)
        assert chapter, chapter_cell
        seen.append(chapter.group(1))
        headings = _headings(chapter.group(1))
        named = ITALIC.findall(read) + ITALIC.findall(skip)
        assert ITALIC.findall(read), f"{chapter.group(1)}: nothing to read and run"
        unknown = [n for n in named if n not in headings]
        assert not unknown, f"{chapter.group(1)}: no such section(s) {unknown}"
        assert not set(ITALIC.findall(read)) & set(ITALIC.findall(skip))
        # every section of the chapter is in one column or the other: none is forgotten
        sections = set(re.findall(r"^## (.+?)\s*$", _prose(chapter.group(1)), re.M))
        forgotten = sections - TEMPLATE_SECTIONS - set(named)
        assert not forgotten, f"{chapter.group(1)}: sections in neither column: {forgotten}"
    assert seen == sorted(seen), "the route goes through the chapters in order"
