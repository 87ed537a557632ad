"""Every relative link in docs/ and README.md points to a file that exists, and to an anchor
that exists on it: a heading, an HTML ``id``, a config key or CLI command of the generated
reference pages, or an object documented on the API page.

Links from docs/ must stay inside docs/ (the site holds nothing else); README.md may link to
any file of the repository. Code blocks and inline code are not links; external URLs and
cross-references to API objects written ``[text][vaekit.fit.fit]`` are checked by the site
build, not here.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from vaekit.reference import expand

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
SOURCES = [*PAGES, ROOT / "README.md"]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^)]*)?\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ID = re.compile(r"""\b(?:id|name)=["']([^"']+)["']""")
ATTR_ID = re.compile(r"\{[^}]*#([\w.:-]+)[^}]*\}\s*$")
AUTODOC = re.compile(r"^:::\s*([\w.]+)", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def prose(markdown: str) -> str:
    """``markdown`` without fenced code blocks and inline code (their text is not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    text = prose(markdown)
    found = INLINE_LINK.findall(text) + REFERENCE_DEFINITION.findall(text)
    return [t for t in found + HTML_LINK.findall(text) if t and not EXTERNAL.match(t)]


def slugify(heading: str) -> str:
    """The anchor Python-Markdown's ``toc`` extension (MkDocs' default) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>|`|\*\*?", "", text)  # tags, code and emphasis marks
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors the site gives ``page`` (a Markdown file) once built."""
    markdown = page.read_text()
    if page.is_relative_to(DOCS):
        markdown = expand(markdown)  # the generated reference tables and headings
    text = FENCE.sub("", markdown)
    found: set[str] = set(HTML_ID.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(text):
        custom = ATTR_ID.search(heading)
        if custom:
            found.add(custom.group(1))
            continue
        slug = slugify(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}_{count}")
    return frozenset(found)


def documented_objects(page: Path) -> tuple[str, ...]:
    """The objects a page renders with mkdocstrings (``::: vaekit.VAE``)."""
    return tuple(AUTODOC.findall(FENCE.sub("", page.read_text())))


def problem(source: Path, target: str) -> str | None:
    path, _, anchor = target.partition("#")
    path = path.partition("?")[0]
    resolved = (source.parent / path).resolve() if path else source
    if path and source.is_relative_to(DOCS) and not resolved.is_relative_to(DOCS):
        return f"{target}: outside docs/, which the site does not hold (link to it on the web)"
    if not resolved.exists():
        return f"{target}: no such file"
    if not anchor or resolved.suffix != ".md":
        return None
    objects = documented_objects(resolved)
    if any(anchor == name or anchor.startswith(name + ".") for name in objects):
        return None
    if anchor not in anchors(resolved):
        return f"{target}: no anchor #{anchor} in {resolved.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(source: Path) -> None:
    broken = [p for t in links(source.read_text()) if (p := problem(source, t))]
    assert not broken, f"{source.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_the_link_checker_finds_what_it_should(tmp_path: Path) -> None:
    page = DOCS / "reference" / "config.md"
    assert problem(page, "cli.md#vaekit-train") is None
    assert problem(page, "#model.latent_dim") is None
    assert problem(page, "api.md#vaekit.VAE.loss") is None
    assert problem(page, "../index.md") is None
    assert problem(page, "cli.md#vaekit-nope") is not None
    assert problem(page, "nope.md") is not None
    assert problem(page, "../../README.md") is not None  # outside the site
    markdown = "[a](x.md) ![b](img/c.png) `[d](e.md)`\n```\n[f](g.md)\n```\n[h]: i.md\n"
    assert links(markdown + "[j](https://example.org) [k][vaekit.fit]") == [
        "x.md",
        "img/c.png",
        "i.md",
    ]
    assert slugify("3. The `run` directory") == "3-the-run-directory"
