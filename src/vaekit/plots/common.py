"""The style and the PNG writer that every figure of ``vaekit.plots`` shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaekit.files import atomic_write

__all__ = ["STYLE", "save_figure"]

# Every writer builds a `matplotlib.figure.Figure` rendered by Agg directly (no pyplot, so no
# global figure registry and no backend switch), uses this one style, and writes its PNG
# atomically through `save_figure` (parent directory created, temporary file, `os.replace`).
DPI = 100
STYLE: dict[Any, Any] = {  # Any keys: matplotlib types them as a Literal of rc names
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.alpha": 0.3,
    "legend.frameon": False,
}


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Render with Agg and write; the Figure is never registered with pyplot, so nothing leaks."""
    FigureCanvasAgg(fig)
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.1)
    )
