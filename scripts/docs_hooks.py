"""MkDocs hook: fill each ``<!-- generated: NAME -->`` marker with text made from the code.

Named under ``hooks:`` in mkdocs.yml. The pages in docs/ hold the marker and a short intro;
``vaekit.reference`` makes the config and CLI tables from ``config.py`` and the argument parser,
so the reference cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

from mkdocs.exceptions import PluginError

from vaekit.reference import expand


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The page's Markdown with its generated sections filled in."""
    try:
        return expand(markdown)
    except ValueError as error:
        raise PluginError(f"{page.file.src_uri}: {error}") from None
