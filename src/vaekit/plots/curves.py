"""Learning curves: rows of training metrics drawn as one panel per quantity."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from vaekit.plots.common import STYLE, save_figure

__all__ = ["Panel", "curve_panels", "save_curves"]

# metric name -> (panel title, y-axis label); other numeric metrics get a plain panel.
_PANELS = {
    "loss": ("objective  recon + KL weight × KL", "nats per datapoint"),
    "neg_elbo": ("negative ELBO  recon + KL", "nats per datapoint"),
    "recon": ("reconstruction  −E[log p(x|z)]", "nats per datapoint"),
    "kl": ("KL(q(z|x) ‖ p(z))", "nats per datapoint"),
    "kl_weight": ("KL weight  beta × warm-up", "weight"),
    "bits_per_dim": ("bits per dimension (negative ELBO)", "bits/dim"),
    "lr": ("learning rate", "lr"),  # log scale when positive
}
# The objective panel when it equals the negative ELBO throughout (beta = 1, no warm-up).
_SAME_OBJECTIVE = ("objective = negative ELBO  recon + KL", "nats per datapoint")
_HIDDEN = {"weighted_kl"}  # objective − recon: the objective panel shows it
_SHOWN_WHEN_NONZERO = {"skipped_steps"}  # a count worth seeing once it is not 0

Series = dict[str, tuple[list[float], list[float]]]  # split -> (epochs, values)


def _with_bits_per_dim(record: Mapping[str, float], num_dims: int) -> dict[str, float]:
    """``record`` with ``split/bits_per_dim`` added where it is missing (rows of older runs
    hold it for validation only): from the negative ELBO, else the reconstruction term."""
    out = dict(record)
    for split in ("train", "val"):
        nll = -out[f"{split}/elbo"] if f"{split}/elbo" in out else out.get(f"{split}/recon")
        if _is_number(nll) and f"{split}/bits_per_dim" not in out:
            out[f"{split}/bits_per_dim"] = nll / (num_dims * math.log(2.0))
    return out


@dataclass(frozen=True)
class Panel:
    """One quantity of the learning curves: its title, y label and {split: (xs, ys)}."""

    name: str
    title: str
    ylabel: str
    series: Series


def curve_panels(
    records: Sequence[Mapping[str, float]], *, num_dims: int | None = None
) -> tuple[list[Panel], bool]:
    """The panels ``save_curves`` draws, in order, and whether the x axis is the epoch.

    ``elbo`` is drawn as ``neg_elbo`` (the same sense as the objective ``loss``); the objective
    gets no panel of its own where it equals the negative ELBO throughout (beta = 1, no
    warm-up); a quantity that takes one value over two or more records is left out
    (``skipped_steps`` is drawn once it is not 0).
    """
    if num_dims is not None:
        records = [_with_bits_per_dim(record, num_dims) for record in records]
    series: dict[str, Series] = {}
    has_epoch = bool(records) and all(_is_number(record.get("epoch")) for record in records)
    for index, record in enumerate(records):
        epoch = record.get("epoch")
        x = float(epoch) if has_epoch and _is_number(epoch) else float(index + 1)
        for key, value in record.items():
            if key in ("epoch", "step") or not _is_number(value):
                continue
            split, _, name = key.rpartition("/")
            if name in _HIDDEN:
                continue
            if name == "elbo":
                name, value = "neg_elbo", -value
            xs, ys = series.setdefault(name, {}).setdefault(split, ([], []))
            xs.append(x)
            ys.append(float(value))
    if not series:
        raise ValueError("save_curves found no numeric metrics in the records")
    titles = dict(_PANELS)
    if "loss" in series and "neg_elbo" in series and _same(series["loss"], series["neg_elbo"]):
        del series["loss"]
        titles["neg_elbo"] = _SAME_OBJECTIVE
    for name in list(series):
        values = [y for _, ys in series[name].values() for y in ys]
        if name in _SHOWN_WHEN_NONZERO:
            constant = all(y == 0 for y in values)
        else:
            constant = len(values) > len(series[name]) and len(set(values)) == 1
        if constant:
            del series[name]
    names = [k for k in _PANELS if k in series] + sorted(k for k in series if k not in _PANELS)
    panels = [Panel(name, *titles.get(name, (name, name)), series[name]) for name in names]
    return panels, has_epoch


def _same(a: Series, b: Series) -> bool:
    """Whether two quantities hold the same values for the same splits and epochs."""
    if a.keys() != b.keys():
        return False
    return all(
        a[split][0] == b[split][0] and np.allclose(a[split][1], b[split][1], rtol=1e-6, atol=1e-6)
        for split in a
    )


def save_curves(
    records: Sequence[Mapping[str, float]], path: str | Path, *, num_dims: int | None = None
) -> Path:
    """Plot epoch rows of metrics (`train/loss`, `val/kl`, `lr`, ...) as one panel per quantity.

    Keys `split/name` share the panel `name` (train in blue, val in orange); non-numeric values
    are ignored; the x axis is `epoch` when present, else the record number. `loss` is the
    objective the optimiser minimised (recon + KL weight × KL for a VAE), `elbo` is drawn as
    the negative ELBO, and constant quantities get no panel (``curve_panels``). ``num_dims``
    (dimensions of one datapoint) fills in bits per dimension where records lack it.
    """
    panels, has_epoch = curve_panels(records, num_dims=num_dims)
    if not panels:
        raise ValueError("save_curves found only constant metrics in the records")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    colours = {"train": "C0", "val": "C1"}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, panel in zip(axes, panels, strict=False):
            for i, (split, (xs, ys)) in enumerate(sorted(panel.series.items())):
                marker = "o" if len(xs) <= 20 else None
                colour = colours.get(split, f"C{i + 2}")
                ax.plot(xs, ys, marker=marker, ms=3, color=colour, label=split or panel.name)
            values = [y for _, ys in panel.series.values() for y in ys]
            if panel.name == "lr" and all(y > 0 for y in values):
                ax.set_yscale("log")
            ax.set_title(panel.title)
            ax.set_xlabel("epoch" if has_epoch else "record")
            ax.set_ylabel(panel.ylabel)
            ax.grid(True)
            if any(panel.series):  # a lone unsplit series such as `lr` needs no legend
                ax.legend()
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        return save_figure(fig, path)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
