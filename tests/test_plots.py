"""Contracts of vaekit.plots: grid geometry, pixel placement, PNG sizes and figure contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image

from vaekit import plots

Z_95 = 1.6448536269514722  # Normal(0, 1).icdf(0.95)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Figures handed to the PNG writer, kept for inspection (the file is still written)."""
    captured: list[Figure] = []
    save = plots.save_figure

    def capture(fig: Figure, path: str | Path) -> Path:
        captured.append(fig)
        return save(fig, path)

    for module in (plots.images, plots.curves, plots.latent, plots.vectors):
        monkeypatch.setattr(module, "save_figure", capture)  # each looks it up in its own globals
    return captured


def _png(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def test_image_grid_places_each_image_in_its_cell() -> None:
    # 5 constant grey images of 4x6 -> 3 columns, 2 rows; the 6th cell stays padding
    images = torch.arange(5, dtype=torch.float32).div(10).view(5, 1, 1, 1).expand(5, 1, 4, 6)
    grid = plots.image_grid(images, padding=2, pad_value=1.0)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 4 + 3 * 2, 3 * 6 + 4 * 2)
    for i in range(6):
        top, left = 2 + (i // 3) * 6, 2 + (i % 3) * 8
        expected = round(i / 10 * 255) if i < 5 else 255
        assert (grid[top : top + 4, left : left + 6] == expected).all(), f"cell {i}"
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all()
    assert (grid[6:8] == 255).all()  # padding between the rows


def test_image_grid_padding_value_columns_and_clamping() -> None:
    images = torch.tensor([-1.0, 2.0, float("nan")]).view(3, 1, 1, 1).expand(3, 1, 2, 2)
    grid = plots.image_grid(images, ncols=10, padding=1, pad_value=0.0)
    assert grid.shape == (1 * 2 + 2 * 1, 3 * 2 + 4 * 1)  # ncols is capped at N
    assert grid[1:3, 1:3].tolist() == [[0, 0], [0, 0]]  # -1 clamps to 0
    assert (grid[1:3, 4:6] == 255).all()  # 2 clamps to 1
    assert (grid[1:3, 7:9] == 0).all()  # NaN drawn black
    assert (grid[0] == 0).all() and (grid[:, 3] == 0).all()  # pad_value 0 -> black
    assert plots.image_grid(images, padding=0).shape == (4, 4)  # default: ceil(sqrt 3) = 2 cols


def test_image_grid_rgb_keeps_channels() -> None:
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # red, blue
    images = colours.view(2, 3, 1, 1).expand(2, 3, 5, 5)
    grid = plots.image_grid(images, ncols=2, padding=0)
    assert grid.shape == (5, 10, 3)
    assert grid[2, 2].tolist() == [255, 0, 0]
    assert grid[2, 7].tolist() == [0, 0, 255]


@pytest.mark.parametrize("shape", [(4, 2, 8, 8), (4, 8, 8), (0, 1, 8, 8)])
def test_image_grid_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        plots.image_grid(torch.zeros(shape))
    with pytest.raises(ValueError, match="ncols"):
        plots.image_grid(torch.zeros(2, 1, 8, 8), ncols=0)


def test_save_image_grid_upscales_small_images_crisply(tmp_path: Path) -> None:
    images = torch.linspace(0, 1, 16).view(16, 1, 1, 1).expand(16, 1, 8, 8)
    path = plots.save_image_grid(images, tmp_path / "new" / "dir" / "grid.png")
    assert path == tmp_path / "new" / "dir" / "grid.png"
    image = _png(path)
    # 4x4 cells; factor ceil((256 - 5 * 2) / 32) = 8 -> 4 * 64 + 5 * 2 = 266 pixels a side
    assert image.mode == "L" and image.size == (266, 266)
    pixels = np.asarray(image)
    cell = pixels[2 + 66 : 2 + 66 + 64, 2 + 2 * 66 : 2 + 2 * 66 + 64]  # row 1, column 2: image 6
    assert (cell == round(6 / 15 * 255)).all()
    assert sorted(p.name for p in path.parent.iterdir()) == ["grid.png"]  # no temporary left


def test_save_image_grid_rgb_large_and_titled(tmp_path: Path) -> None:
    images = torch.rand(6, 3, 64, 64)
    plain = _png(plots.save_image_grid(images, tmp_path / "plain.png", min_size=100))
    assert plain.mode == "RGB" and plain.size == (3 * 64 + 8, 2 * 64 + 6)  # no upscale needed
    titled = _png(plots.save_image_grid(images, tmp_path / "titled.png", title="samples"))
    assert min(titled.size) >= 256
    assert titled.size[1] > titled.size[0] * (plain.size[1] / plain.size[0])  # room for a title


def test_save_rows_labels_widen_the_figure(tmp_path: Path) -> None:
    rows = [torch.rand(5, 1, 8, 8) for _ in range(3)]
    labels = ["step 0", "step 5", "step 10"]
    labelled = _png(plots.save_rows(rows, tmp_path / "chain.png", row_labels=labels))
    bare = _png(plots.save_rows(rows, tmp_path / "bare.png"))
    assert bare.size[0] >= 5 * 48 and bare.size[1] >= 3 * 48  # 8x8 cells enlarged to >= 48 px
    assert labelled.size[0] > bare.size[0] + 20  # labels are drawn left of the rows
    ragged = _png(plots.save_rows([rows[0], rows[1][:2]], tmp_path / "ragged.png"))
    assert ragged.size[0] == bare.size[0]
    with pytest.raises(ValueError, match="row_labels"):
        plots.save_rows(rows, tmp_path / "x.png", row_labels=["one"])
    with pytest.raises(ValueError, match="image shape"):
        plots.save_rows([rows[0], torch.rand(5, 3, 8, 8)], tmp_path / "x.png")


def test_save_reconstructions_pairs_inputs_with_reconstructions(tmp_path: Path) -> None:
    x = torch.zeros(40, 1, 28, 28)  # black inputs above white reconstructions
    path = plots.save_reconstructions(x, torch.ones_like(x), tmp_path / "recon.png")
    pixels = np.asarray(_png(path).convert("L"))
    assert (pixels < 20).sum() >= 16 * 56 * 56  # 16 inputs at 2x: max_items is honoured...
    assert (pixels < 20).sum() < 17 * 56 * 56  # ...and no more than 16
    many = _png(plots.save_reconstructions(x, x, tmp_path / "many.png", max_items=40))
    assert many.size[1] - _png(path).size[1] >= 4 * 56  # three pairs of rows instead of one
    with pytest.raises(ValueError, match="differ in shape"):
        plots.save_reconstructions(x, x[:10], tmp_path / "x.png")


@pytest.mark.parametrize("latent_dim", [1, 2, 5])
@pytest.mark.parametrize("label_kind", ["none", "classes", "continuous"])
def test_save_latent_scatter_dims_and_labels(
    tmp_path: Path, figures: list[Figure], latent_dim: int, label_kind: str
) -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(200, latent_dim, generator=generator)
    labels = {
        "none": None,
        "classes": torch.arange(200) % 3,
        "continuous": torch.rand(200, generator=generator),
    }[label_kind]
    path = plots.save_latent_scatter(z, labels, tmp_path / "z.png", title="codes")
    assert min(_png(path).size) >= 300
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_title() == "codes"
    assert ax.get_xlabel().startswith("PC1" if latent_dim > 2 else "z1")
    legend = ax.get_legend()
    if label_kind == "classes":
        assert legend is not None and [t.get_text() for t in legend.get_texts()] == ["0", "1", "2"]
        colours = [to_rgba(handle.get_color()) for handle in legend.legend_handles]  # type: ignore[union-attr]
        assert colours == [colormaps["tab10"](k) for k in range(3)]  # digit k in colour Ck
    else:
        assert legend is None
    assert len(fig.axes) == (2 if label_kind == "continuous" else 1)  # colorbar axes


def test_save_latent_scatter_pca_reports_explained_variance(
    tmp_path: Path, figures: list[Figure]
) -> None:
    # variance 9 along e1, 1 along e2, 0 along e3 -> 90% and 10%
    z = torch.tensor([[3.0, 0, 0], [-3.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    plots.save_latent_scatter(z, None, tmp_path / "pca.png")
    ax = figures[0].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("PC1 (90% var)", "PC2 (10% var)")
    with pytest.raises(ValueError, match="labels"):
        plots.save_latent_scatter(z, torch.zeros(3), tmp_path / "x.png")


def test_save_curves_panels_from_partial_keys(tmp_path: Path, figures: list[Figure]) -> None:
    records = [
        {"epoch": e, "train/loss": 100 / e, "val/loss": 110 / e, "val/kl": 5.0 + e, "lr": 1e-3 / e}
        for e in range(1, 6)
    ]
    records[2]["note"] = "restarted"  # type: ignore[assignment]  # non-numeric: ignored
    path = plots.save_curves(records, tmp_path / "curves.png")
    assert min(_png(path).size) >= 200
    visible = [ax for ax in figures[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [
        "objective  recon + KL weight × KL",
        "KL(q(z|x) ‖ p(z))",
        "learning rate",
    ]
    loss, kl, lr = visible
    assert [line.get_label() for line in loss.get_lines()] == ["train", "val"]
    assert [line.get_label() for line in kl.get_lines()] == ["val"]
    assert np.asarray(loss.get_lines()[1].get_ydata()).tolist() == pytest.approx(
        [110 / e for e in range(1, 6)]
    )
    assert "nats" in loss.get_ylabel() and loss.get_xlabel() == "epoch"
    assert lr.get_yscale() == "log" and lr.get_legend() is None

    plots.save_curves([{"train/loss": 3.0}, {"train/loss": 2.0}], tmp_path / "one.png")
    (only,) = [ax for ax in figures[1].axes if ax.get_visible()]
    assert only.get_xlabel() == "record"
    assert np.asarray(only.get_lines()[0].get_xdata()).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="no numeric"):
        plots.save_curves([{"epoch": 1, "note": "x"}], tmp_path / "none.png")  # type: ignore[dict-item]


def test_save_manifold_decodes_normal_quantiles_z2_upwards(
    tmp_path: Path, figures: list[Figure]
) -> None:
    seen: list[torch.Tensor] = []

    def decode_mean(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return (z[:, 1] > 0).to(z.dtype).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)  # white iff z2 > 0

    path = plots.save_manifold(
        decode_mean, tmp_path / "manifold.png", grid_size=5, dtype=torch.float64
    )
    (z,) = seen
    assert z.shape == (25, 2) and z.dtype == torch.float64
    assert z[0].tolist() == pytest.approx([-Z_95, Z_95])  # top-left
    assert z[4].tolist() == pytest.approx([Z_95, Z_95])  # top-right
    assert z[-1].tolist() == pytest.approx([Z_95, -Z_95])  # bottom-right
    assert z[12].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)  # centre
    grid = np.asarray(figures[0].axes[0].images[0].get_array())
    assert (grid[: grid.shape[0] // 3] == 255).all()  # z2 > 0 drawn at the top
    assert (grid[-grid.shape[0] // 3 :] == 0).all()
    assert min(_png(path).size) >= 400
    with pytest.raises(ValueError, match="decode_mean must return"):
        plots.save_manifold(lambda z: z, tmp_path / "x.png", grid_size=3)
    with pytest.raises(ValueError, match="latent_range"):
        plots.save_manifold(decode_mean, tmp_path / "x.png", latent_range=1.0)


def test_writers_leave_no_pyplot_figures_open(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    plots.save_rows([torch.rand(2, 1, 8, 8)], tmp_path / "rows.png", title="t")
    plots.save_latent_scatter(torch.randn(10, 2), None, tmp_path / "z.png")
    assert plt.get_fignums() == []


@pytest.mark.parametrize("title", [None, "Samples"])
def test_large_images_stay_under_the_size_limit(tmp_path: Path, title: str | None) -> None:
    images = torch.rand(16, 1, 900, 900, generator=torch.Generator().manual_seed(0))
    out = plots.save_image_grid(images, tmp_path / "grid.png", title=title)
    assert max(Image.open(out).size) <= plots.MAX_SIDE


def test_long_rows_stay_under_the_size_limit(tmp_path: Path) -> None:
    rows = [torch.rand(16, 3, 300, 300) for _ in range(3)]
    out = plots.save_rows(rows, tmp_path / "rows.png", row_labels=["a", "b", "c"], title="t")
    assert max(Image.open(out).size) <= plots.MAX_SIDE


def test_vector_figures_have_a_fixed_size_whatever_the_data(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(1000, 60, generator=g) * 1e4, torch.randn(1000, 60, generator=g)
    for name, write in (
        ("m", plots.save_marginals),
        ("p", plots.save_pairs),
        ("r", plots.save_vector_reconstructions),
    ):
        assert max(Image.open(write(real, fake, tmp_path / f"{name}.png")).size) <= 1500
    paths = plots.save_paths({"a": torch.randn(9, 4, 60)}, tmp_path / "t.png")
    assert max(Image.open(paths).size) <= 1500


def _history(beta: float = 1.0, skipped: float = 0.0) -> list[dict[str, float]]:
    """Epoch rows as the trainer writes them (a VAE; ``beta`` on the KL)."""
    rows = []
    for e in range(1, 5):
        row: dict[str, float] = {"epoch": float(e)}
        for split, offset in (("train", 0.0), ("val", 2.0)):
            recon, kl = 100.0 / e + offset, 5.0 + e
            row |= {
                f"{split}/recon": recon,
                f"{split}/kl": kl,
                f"{split}/elbo": -(recon + kl),
                f"{split}/loss": recon + beta * kl,
                f"{split}/weighted_kl": beta * kl,
                f"{split}/kl_weight": beta,
            }
        row |= {"val/bits_per_dim": 0.1 / e, "lr": 1e-3, "skipped_steps": skipped}
        rows.append(row)
    return rows


def test_curves_have_no_constant_panel_and_pair_train_with_val() -> None:
    panels, _ = plots.curve_panels(_history(), num_dims=64)
    names = [panel.name for panel in panels]
    # beta = 1: the objective is the negative ELBO, one panel; the constant lr, KL weight and
    # skipped_steps = 0 have none, and weighted_kl is the objective's part, not a panel
    assert names == ["neg_elbo", "recon", "kl", "bits_per_dim"]
    assert panels[0].title.startswith("objective = negative ELBO")
    for panel in panels:
        values = [y for _, ys in panel.series.values() for y in ys]
        assert len(set(values)) > 1, panel.name
        assert set(panel.series) == {"train", "val"}, panel.name  # bits/dim: train filled in
    bits = panels[-1].series["train"][1]
    assert bits[0] == pytest.approx((100.0 + 6.0) / (64 * np.log(2.0)))


def test_curves_show_objective_and_negative_elbo_apart_when_beta_weights_the_kl() -> None:
    panels, _ = plots.curve_panels(_history(beta=4.0, skipped=3.0))
    by_name = {panel.name: panel for panel in panels}
    assert list(by_name)[:2] == ["loss", "neg_elbo"]
    assert "KL weight" in by_name["loss"].title and "negative ELBO" in by_name["neg_elbo"].title
    assert by_name["neg_elbo"].series["train"][1][0] == pytest.approx(106.0)
    assert "skipped_steps" in by_name  # a count that is not 0 is shown, constant or not
    assert "kl_weight" not in by_name and "lr" not in by_name


def test_manifold_grid_covers_every_code(tmp_path: Path, figures: list[Figure]) -> None:
    generator = torch.Generator().manual_seed(0)
    # a central cluster and two outer ones, far past the Normal(0, 1) 5-95 % quantiles
    codes = torch.cat(
        [
            torch.randn(500, 2, generator=generator),
            torch.randn(50, 2, generator=generator) * 0.3 + torch.tensor([4.0, -3.5]),
            torch.randn(50, 2, generator=generator) * 0.3 + torch.tensor([-5.0, 3.0]),
        ]
    )
    z1, z2 = plots.manifold_axes(codes, grid_size=12)
    assert (codes[:, 0] >= z1.min()).all() and (codes[:, 0] <= z1.max()).all()
    assert (codes[:, 1] >= z2.min()).all() and (codes[:, 1] <= z2.max()).all()
    seen: list[torch.Tensor] = []

    def decode_mean(z: torch.Tensor) -> torch.Tensor:
        seen.append(z)
        return torch.zeros(len(z), 1, 4, 4)

    plots.save_manifold(decode_mean, tmp_path / "m.png", codes=codes, grid_size=12)
    (z,) = seen
    low, high = z.amin(0), z.amax(0)
    assert (codes >= low).all() and (codes <= high).all()
    with pytest.raises(ValueError, match="codes"):
        plots.manifold_axes(torch.zeros(3, 3))
