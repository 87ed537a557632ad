"""The docs teach; they are not a lab notebook. No page of docs/ speaks of working sessions,
numbered issues or what "we tried", dates its work, or names a path outside the repository
(measurement history belongs in benchmarks/results/ and commit messages; a figure names the
command and the machine, not the day).

What the patterns leave alone, on purpose (each is checked below):

- words that merely contain "session" ("possession") and the verb "issues" ("it issues 3
  warnings"): only the word "session(s)" and a numbered "issue 12" / "issue #12" are flagged;
- a date inside a file name (``run-2026-11-22.json``): any other date is flagged, at the start
  of a line (a log line) or inside a sentence ("measured on 2026-11-22");
- the user's own paths: ``~/.cache/vaekit/data``, relative paths (``runs/first``, ``data/x``)
  and placeholders such as ``/new/place/x.npz``; URLs are not paths (``https://x.org/home/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# the docs, and the two pages outside docs/ that speak to users
PAGES = [
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "README.md",
    ROOT / "benchmarks" / "README.md",
]

PATTERNS: dict[str, re.Pattern[str]] = {
    "the word 'session'": re.compile(r"\bsessions?\b", re.I),
    "a numbered issue": re.compile(r"\bissue\s*(?:#|no\.?\s*|number\s*)?\d+|\bissues\s*#\d+", re.I),
    "'we tried'": re.compile(r"\bwe(?:'ve| have)? tried\b", re.I),
    # a date anywhere but inside a file name (preceded by a letter, digit, '-', '_' or '/')
    "a date": re.compile(r"(?<![\w/-])\d{4}-\d{2}-\d{2}\b"),
    "a path outside the repository": re.compile(
        r"(?<![\w.~/-])(?:/work|/tmp|/home|/root|/Users|/mnt|/scratch)/|(?<![\w./-])shared/"
    ),
}


def findings(text: str) -> list[str]:
    """``what: line`` for each line of ``text`` that matches a pattern."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in PATTERNS.items():
            if pattern.search(line):
                found.append(f"line {number}, {what}: {line.strip()}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_read_as_docs_not_as_a_log(page: Path) -> None:
    found = findings(page.read_text())
    assert not found, f"{page.relative_to(ROOT)}:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "In this session we trained a VAE.",
        "Sessions 3 and 4 measured it.",
        "See issue 12.",
        "Fixed in issue #7.",
        "We tried a larger batch first.",
        "2026-11-22: reran the benchmark.",
        "- 2026-11-22 14:03 training diverged",
        "| 2026-11-22 | 12.3 s |",
        "## 2026-11-22",
        "Measured on 2026-11-22 on 2 CPU cores.",
        "Measured 2026-12-05 on a 2-core VM.",
        "on the machine above (2026-12-06): training",
        "The files are in /work/main/runs.",
        "python x.py --out /tmp/run",
        "copy it from shared/notes.md",
    ],
)
def test_the_patterns_catch_log_wording(line: str) -> None:
    assert findings(line)


@pytest.mark.parametrize(
    "line",
    [
        "The encoder takes possession of the batch.",
        "The evaluator issues 3 warnings at most.",
        "See `benchmarks/results/throughput-2026-11-22.json`.",
        "The cache defaults to ~/.cache/vaekit/data.",
        "vaekit evaluate RUN --data-path /new/place/x.npz",
        "Train into runs/first and read data/x.csv.",
        "Read https://example.org/home/page and src/shared/util.py.",
    ],
)
def test_the_patterns_leave_legitimate_text_alone(line: str) -> None:
    assert not findings(line)
