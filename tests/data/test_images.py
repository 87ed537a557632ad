"""Image folders and CelebA: recursive discovery, centre crop, resize, grey or RGB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaekit.data import SourceOptions, load_dataset
from vaekit.data.images import load_celeba, load_image_folder
from vaekit.errors import DataError


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_is_read_recursively_cropped_and_resized(tmp_path: Path) -> None:
    # 20x10 image: left half black, centre square white, right part black.
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, 5:15] = 255
    write_png(tmp_path / "a.png", wide)
    write_png(tmp_path / "sub" / "b.png", np.full((12, 12, 3), 128, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    raw = load_image_folder(SourceOptions(root=tmp_path, path=tmp_path, image_size=8))
    assert raw.train.x.shape == (2, 3, 8, 8) and raw.test is None and raw.train.y is None
    # The central square of the wide image is all white, so the crop keeps only white.
    assert torch.allclose(raw.train.x[0], torch.ones(3, 8, 8))
    assert torch.allclose(raw.train.x[1], torch.full((3, 8, 8), 128 / 255))


def test_grey_channel_and_test_split_carved(tmp_path: Path) -> None:
    for i in range(12):
        write_png(tmp_path / f"{i:02d}.png", np.full((9, 9, 3), 20 * i, dtype=np.uint8))
    options = SourceOptions(root=tmp_path, path=tmp_path, image_size=4, channels=1)
    dataset = load_dataset("image-folder", options=options)
    assert dataset.event_shape == (1, 4, 4)
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 12
    assert len(dataset.test) >= 2 and dataset.num_classes is None


def test_empty_or_broken_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        load_image_folder(SourceOptions(root=tmp_path, path=tmp_path))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_image_folder(SourceOptions(root=tmp_path, path=tmp_path))


def test_celeba_crop_and_official_partition(tmp_path: Path) -> None:
    folder = tmp_path / "celeba" / "img_align_celeba"
    face = np.zeros((218, 178, 3), dtype=np.uint8)
    face[39:179, 19:159] = 200  # exactly the central 140x140 crop
    names = [f"{i:06d}.jpg" for i in range(1, 6)]
    for name in names:
        write_png(folder / name.replace(".jpg", ".png"), face)
    partition = "\n".join(
        f"{n.replace('.jpg', '.png')} {p}" for n, p in zip(names, [0, 0, 1, 2, 2], strict=True)
    )
    (folder.parent / "list_eval_partition.txt").write_text(partition)
    raw = load_celeba(SourceOptions(root=tmp_path, image_size=16))
    assert raw.train.x.shape == (3, 3, 16, 16) and raw.test is not None and len(raw.test) == 2
    assert torch.allclose(raw.train.x, torch.full_like(raw.train.x, 200 / 255))


def test_celeba_missing_folder_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="img_align_celeba"):
        load_celeba(SourceOptions(root=tmp_path))


def _folder_with_bad_files(folder: Path) -> None:
    """20 readable images (RGB, grey, odd sizes) and 3 unreadable ones."""
    rng = np.random.default_rng(0)
    for i in range(20):
        side = (9 + i, 13 + 2 * i)
        shape = side if i % 2 else (*side, 3)  # every other image is grey
        write_png(folder / f"ok-{i:02d}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "empty.jpg").write_bytes(b"")
    good = folder / "ok-00.png"
    (folder / "truncated.png").write_bytes(good.read_bytes()[:40])


def test_one_bad_file_refuses_the_folder_naming_it_unless_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vaekit.cli import main

    folder = tmp_path / "images"
    _folder_with_bad_files(folder)
    options = SourceOptions(root=tmp_path, path=folder, image_size=8)
    with pytest.raises(DataError, match=r"3 of 23 image files cannot be read .*corrupt\.png"):
        load_image_folder(options)
    raw = load_image_folder(
        SourceOptions(root=tmp_path, path=folder, image_size=8, skip_bad_files=True)
    )
    assert raw.train.x.shape == (20, 3, 8, 8)
    assert sorted(Path(p).name for p in raw.skipped) == [
        "corrupt.png",
        "empty.jpg",
        "truncated.png",
    ]

    config = str(Path(__file__).parents[2] / "configs" / "tiny.toml")
    argv = ["train", "--config", config, "--quiet", "--set", "data.name='image-folder'"]
    argv += ["--set", f"data.path={str(folder)!r}", "--set", "data.image_size=8"]
    argv += ["--set", "data.channels=1", "--set", "model.likelihood='gaussian'"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.skip_bad_files = true" in err[0]
    assert not (tmp_path / "refused").exists()  # no run directory left behind
    argv += ["--set", "data.skip_bad_files=true", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    info = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert sorted(Path(p).name for p in info["skipped_files"]) == [
        "corrupt.png", "empty.jpg", "truncated.png",
    ]  # fmt: skip


def grey_png(path: Path, value: int) -> None:
    write_png(path, np.full((6, 6), value, dtype=np.uint8))


def test_class_folders_label_each_image_by_its_sorted_folder_name(tmp_path: Path) -> None:
    # The pixel value says the class, so each label can be checked against its image.
    for name, value in (("zebra", 200), ("ant", 0), ("cat", 100)):
        for i in range(3):
            grey_png(tmp_path / name / f"{i}.png", value)
    grey_png(tmp_path / "cat" / "deeper" / "x.png", 100)  # below a class folder: still a cat
    raw = load_image_folder(SourceOptions(root=tmp_path, path=tmp_path, image_size=4))
    assert raw.train.y is not None and raw.train.y.dtype == torch.int64
    expected = (raw.train.x[:, 0, 0, 0] * 255).round().long() // 100  # ant 0, cat 1, zebra 2
    assert torch.equal(raw.train.y, expected) and raw.train.y.tolist().count(1) == 4
    assert raw.class_names == ("ant", "cat", "zebra")


@pytest.mark.parametrize("layout", ["a file beside the folders", "one folder only"])
def test_other_layouts_stay_unlabelled(tmp_path: Path, layout: str) -> None:
    grey_png(tmp_path / "one" / "0.png", 0)
    grey_png(tmp_path / "one" / "1.png", 0)
    if layout == "a file beside the folders":
        grey_png(tmp_path / "two" / "0.png", 9)
        grey_png(tmp_path / "loose.png", 9)
    raw = load_image_folder(SourceOptions(root=tmp_path, path=tmp_path, image_size=4))
    assert raw.train.y is None and raw.class_names == ()


def test_labels_stay_with_their_images_when_bad_files_are_skipped(tmp_path: Path) -> None:
    for name, value in (("a", 0), ("b", 100), ("c", 200)):
        for i in range(3):
            grey_png(tmp_path / name / f"{i}.png", value)
    (tmp_path / "a" / "2.png").write_bytes(b"not a png")
    (tmp_path / "b" / "0.png").write_bytes(b"not a png")
    (tmp_path / "notes.png").write_bytes(b"not a png")  # skipped: the layout still has classes
    options = SourceOptions(root=tmp_path, path=tmp_path, image_size=4, skip_bad_files=True)
    raw = load_image_folder(options)
    assert len(raw.skipped) == 3 and raw.train.y is not None
    assert raw.train.y.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert torch.equal(raw.train.y, (raw.train.x[:, 0, 0, 0] * 255).round().long() // 100)


def test_a_folder_of_class_folders_has_classes_in_every_split(tmp_path: Path) -> None:
    for i in range(60):
        grey_png(tmp_path / f"class{i % 3}" / f"{i:02d}.png", 100 * (i % 3))
    dataset = load_dataset(
        "image-folder", options=SourceOptions(root=tmp_path, path=tmp_path, image_size=4)
    )
    assert dataset.num_classes == 3
    for split in (dataset.train, dataset.val, dataset.test):
        assert split.y is not None
        assert torch.equal(split.y, (split.x[:, 0, 0, 0] * 255).round().long() // 100)


def test_hidden_entries_are_left_out_and_linked_folders_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    for i in range(2):
        grey_png(outside / f"{i}.png", 100)
    folder = tmp_path / "data"
    grey_png(folder / "a" / "0.png", 0)
    grey_png(folder / "a" / ".thumb.png", 50)  # hidden file
    grey_png(folder / ".ipynb_checkpoints" / "0-checkpoint.png", 50)  # hidden folder
    (folder / "b").symlink_to(outside, target_is_directory=True)  # a linked class folder
    (folder / "a" / "loop").symlink_to(folder, target_is_directory=True)  # a link back up
    raw = load_image_folder(SourceOptions(root=tmp_path, path=folder, image_size=4))
    assert raw.class_names == ("a", "b") and raw.train.y is not None
    assert raw.train.y.tolist() == [0, 1, 1]
    assert torch.equal(raw.train.y, (raw.train.x[:, 0, 0, 0] * 255).round().long() // 100)


def test_folders_named_by_numbers_go_by_value(tmp_path: Path) -> None:
    for name in ("10", "2", "0", "1"):
        grey_png(tmp_path / name / "x.png", 0)
    raw = load_image_folder(SourceOptions(root=tmp_path, path=tmp_path, image_size=4))
    assert raw.class_names == ("0", "1", "2", "10")
    assert raw.train.y is not None and raw.train.y.tolist() == [0, 1, 3, 2]  # files in path order
