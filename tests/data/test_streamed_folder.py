"""Image folders streamed from their uint8 cache on disk: the same data, splits, identity and
training as in memory; the cache reused, rebuilt and never half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from PIL import Image

import vaekit.experiment
import vaekit.training.launch
from vaekit.cli import main
from vaekit.config import Config, load_config
from vaekit.data import SourceOptions, load_dataset
from vaekit.data import image_cache as image_cache_module
from vaekit.data.image_cache import CACHE_FOLDER, CachedImages
from vaekit.data.sources import Streamed, from_dataset
from vaekit.data.streamed import MEMORY_BUDGET_ENV, sample_rows
from vaekit.errors import DataError

TINY = str(Path(__file__).parents[2] / "configs" / "tiny.toml")


def write_folder(folder: Path, count: int = 60, *, seed: int = 0, classes: bool = True) -> Path:
    """``count`` PNGs, mostly 16x16 RGB, every fifth grey and every seventh not square; in two
    class folders sub0 and sub1, or with ``classes=False`` directly in ``folder``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape: tuple[int, ...] = (16, 16) if i % 5 == 0 else (16, 16, 3)
        if i % 7 == 0:
            shape = (19, 23, *shape[2:])
        path = folder / f"sub{i % 2}" / f"{i:03d}.png" if classes else folder / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "images")


def options(folder: Path, in_memory: bool | Literal["auto"], **kwargs: Any) -> SourceOptions:
    """Reading ``folder`` as 16x16 images (unless ``kwargs`` say otherwise), cached beside it."""
    settings = {"image_size": 16, **kwargs}
    return SourceOptions(root=folder.parent / "cache", path=folder, in_memory=in_memory, **settings)


def cache_files(folder: Path) -> list[str]:
    return sorted(path.name for path in (folder.parent / "cache" / CACHE_FOLDER).iterdir())


class DecodeCounter:
    """Counts decoded files; raises ``error`` at the ``fail_at``-th one, if given."""

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None):
        self.calls, self.fail_at, self.error = 0, fail_at, error
        self.real = image_cache_module.decode_or_error

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            assert self.error is not None
            raise self.error
        return self.real(*args)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"binarize": "dynamic", "val_from": "tail"},
        {"val_size": 0, "limit": 50},
        {"val_size": 12, "seed": 3, "channels": 1},
        {"flat": True},
    ],
)
def test_streamed_splits_and_identity_equal_the_in_memory_ones(
    tmp_path: Path, settings: dict[str, Any]
) -> None:
    settings = dict(settings)
    flat = settings.pop("flat", False)
    folder = write_folder(tmp_path / "images", classes=not flat)
    source = {"channels": settings.pop("channels")} if "channels" in settings else {}
    held = load_dataset("image-folder", options=options(folder, True, **source), **settings)
    streamed = load_dataset("image-folder", options=options(folder, False, **source), **settings)
    assert held.train_stream is None and isinstance(streamed.train_stream, CachedImages)
    assert streamed.identity == held.identity
    assert streamed.event_shape == held.event_shape == ((1,) if source else (3,)) + (16, 16)
    sample = sample_rows(len(held.train), settings.get("seed", 0))
    for split in ("val", "test"):
        assert torch.equal(getattr(streamed, split).x, getattr(held, split).x), split
        labels = getattr(streamed, split).y  # the folder's class folders, sub0 and sub1
        if flat:
            assert labels is None and getattr(held, split).y is None
        else:
            assert labels is not None and torch.equal(labels, getattr(held, split).y), split
    if flat:
        assert streamed.train.y is None and streamed.train_stream_labels is None
        assert streamed.num_classes is None and streamed.class_names == ()
    else:
        assert held.train.y is not None and streamed.train.y is not None
        assert torch.equal(streamed.train.y, held.train.y[sample])
        assert streamed.train_stream_labels is not None
        assert torch.equal(streamed.train_stream_labels, held.train.y)
        assert streamed.num_classes == held.num_classes == 2
        assert streamed.class_names == held.class_names == ("sub0", "sub1")
    items = torch.stack([streamed.train_stream[i] for i in range(len(streamed.train_stream))])
    assert torch.equal(items, held.train.x)  # every training image, bit for bit
    assert held.train.x.is_contiguous() and streamed.val.x.is_contiguous()
    assert torch.equal(streamed.train.x, held.train.x[sample])
    batch = streamed.train_stream.__getitems__([5, 0, 1, 2])
    assert torch.equal(torch.stack(batch), held.train.x[[5, 0, 1, 2]])


def test_the_train_sample_is_bounded(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaekit.data.streamed.TRAIN_SAMPLE_POINTS", 7)
    streamed = load_dataset("image-folder", options=options(folder, False))
    assert len(streamed.train) == 7 and len(from_dataset(streamed).train) == 60 - 6 - 5
    # 60 images: 6 (a tenth) carved for test, 5 (a tenth of the other 54) for validation


def test_the_train_sample_is_drawn_from_the_whole_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vaekit.data.streamed.TRAIN_SAMPLE_POINTS", 100)
    rows = sample_rows(1000, seed=0)
    assert len(rows) == 100 and torch.equal(rows, rows.sort().values)
    assert int(rows.max()) > 500 and not torch.equal(rows, sample_rows(1000, seed=1))
    assert torch.equal(sample_rows(50, seed=0), torch.arange(50))  # fewer: all, in order


def test_a_moved_folder_reuses_its_cache_with_its_labels_and_skipped_files(
    tmp_path: Path,
) -> None:
    """The cache is keyed by names relative to the folder: after a move it is reused, and the
    skipped files and labels follow the files as they are named now."""
    folder = write_folder(tmp_path / "images")
    (folder / "sub0" / "bad.png").write_bytes(b"not a png")
    (folder / "sub1" / "000x.png").write_bytes(b"not a png either")
    skip = {"skip_bad_files": True}
    first = load_dataset("image-folder", options=options(folder, False, **skip))
    moved = folder.rename(tmp_path / "elsewhere")
    held = load_dataset("image-folder", options=options(moved, True, **skip))
    again = load_dataset("image-folder", options=options(moved, False, **skip))
    assert len(list((tmp_path / "cache" / CACHE_FOLDER).glob("*.npy"))) == 1  # reused
    assert (
        again.skipped
        == held.skipped
        == (
            str(moved / "sub0" / "bad.png"),
            str(moved / "sub1" / "000x.png"),
        )
    )
    assert again.identity == held.identity == first.identity
    assert again.train_stream_labels is not None and held.train.y is not None
    assert torch.equal(again.train_stream_labels, held.train.y)


def test_workers_read_the_same_batches(folder: Path) -> None:
    streamed = load_dataset("image-folder", options=options(folder, False))
    assert streamed.train_stream is not None
    index = [torch.tensor([3, 1, 4]), torch.tensor([10, 11, 12, 13])]
    in_process = list(
        Streamed(streamed.train_stream, num_workers=0).gather(index, torch.device("cpu"))
    )
    in_workers = list(
        Streamed(streamed.train_stream, num_workers=2).gather(index, torch.device("cpu"))
    )
    for a, b, rows in zip(in_process, in_workers, index, strict=True):
        assert torch.equal(a, b) and a.shape == (len(rows), 3, 16, 16)


def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = DecodeCounter()
    monkeypatch.setattr(image_cache_module, "decode_or_error", counter)
    first = load_dataset("image-folder", options=options(folder, False))
    assert counter.calls == 60 and len(cache_files(folder)) == 2  # <key>.npy and <key>.json
    again = load_dataset("image-folder", options=options(folder, False))
    assert counter.calls == 60 and again.identity == first.identity  # nothing decoded

    changed = folder / "sub1" / "001.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    rebuilt = load_dataset("image-folder", options=options(folder, False))
    assert counter.calls == 120 and len(cache_files(folder)) == 4
    assert rebuilt.identity != first.identity
    assert rebuilt.identity == load_dataset("image-folder", options=options(folder, True)).identity

    load_dataset("image-folder", options=options(folder, False, image_size=8))
    assert counter.calls == 180  # other decode settings: another cache


@pytest.mark.parametrize("error", [KeyboardInterrupt(), MemoryError()])
def test_an_interrupted_build_leaves_no_cache(
    folder: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    monkeypatch.setattr(image_cache_module, "CHUNK_IMAGES", 16)
    monkeypatch.setattr(image_cache_module, "decode_or_error", DecodeCounter(40, error))
    with pytest.raises(type(error)):
        load_dataset("image-folder", options=options(folder, False))
    assert cache_files(folder) == []  # neither the array, its description nor a temporary
    counter = DecodeCounter()
    monkeypatch.setattr(image_cache_module, "decode_or_error", counter)
    streamed = load_dataset("image-folder", options=options(folder, False))
    assert counter.calls == 60
    assert streamed.identity == load_dataset("image-folder", options=options(folder, True)).identity


def test_a_damaged_cache_is_not_used(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed build (array renamed, description not yet written) and a truncated array."""
    reference = load_dataset("image-folder", options=options(folder, True)).identity
    load_dataset("image-folder", options=options(folder, False))
    cache = folder.parent / "cache" / CACHE_FOLDER
    (array,) = cache.glob("*.npy")
    (description,) = cache.glob("*.json")
    counter = DecodeCounter()
    monkeypatch.setattr(image_cache_module, "decode_or_error", counter)
    description.unlink()
    assert load_dataset("image-folder", options=options(folder, False)).identity == reference
    assert counter.calls == 60
    with open(array, "rb+") as handle:
        handle.truncate(array.stat().st_size - 100)
    assert load_dataset("image-folder", options=options(folder, False)).identity == reference
    assert counter.calls == 120


def test_auto_streams_above_the_memory_budget(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 RGB images of 16x16 take 60 * 3 * 16 * 16 * 4 = 184,320 bytes as float32
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "184320")
    assert load_dataset("image-folder", options=options(folder, "auto")).train_stream is None
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "184319")
    assert load_dataset("image-folder", options=options(folder, "auto")).train_stream is not None
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "lots")
    with pytest.raises(DataError, match=MEMORY_BUDGET_ENV):
        load_dataset("image-folder", options=options(folder, "auto"))
    monkeypatch.delenv(MEMORY_BUDGET_ENV)  # a fraction of this machine's memory
    assert load_dataset("image-folder", options=options(folder, "auto")).train_stream is None


def test_bad_files_are_refused_or_skipped_as_in_memory(folder: Path) -> None:
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"1 of 61 image files cannot be read .*corrupt\.png"):
        load_dataset("image-folder", options=options(folder, False))
    assert cache_files(folder) == []
    skip = {"skip_bad_files": True}
    held = load_dataset("image-folder", options=options(folder, True, **skip))
    streamed = load_dataset("image-folder", options=options(folder, False, **skip))
    assert streamed.skipped == held.skipped == (str(folder / "corrupt.png"),)
    assert streamed.identity == held.identity
    # the cache holds the 60 readable images only, and still refuses without skip_bad_files
    (array,) = (folder.parent / "cache" / CACHE_FOLDER).glob("*.npy")
    assert np.load(array, mmap_mode="r").shape == (60, 3, 16, 16)
    with pytest.raises(DataError, match=r"corrupt\.png.*data\.skip_bad_files = true"):
        load_dataset("image-folder", options=options(folder, False))


def test_what_cannot_stream_is_refused_naming_the_setting(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"binarize = 'static'.*data\.in_memory = true"):
        load_dataset("image-folder", options=options(folder, False), binarize="static")
    with pytest.raises(DataError, match=r"data\.standardize = false"):
        load_dataset("image-folder", options=options(folder, False), standardize=True)
    with pytest.raises(DataError, match=r"'digits' is always held in memory.*in_memory = \"auto\""):
        load_dataset("digits", options=SourceOptions(root=tmp_path, in_memory=False))


def folder_config(folder: Path, *overrides: str) -> Config:
    """The tiny recipe on ``folder``: 16x16 grey images, a Gaussian likelihood."""
    return load_config(TINY, list(folder_settings(folder, *overrides)))


def folder_settings(folder: Path, *overrides: str) -> list[str]:
    settings = ["data.name='image-folder'", f"data.path={str(folder)!r}", "data.limit=60"]
    settings += [f"data.root={str(folder.parent / 'cache')!r}", "data.image_size=16"]
    settings += ["data.channels=1", "model.likelihood='gaussian'", "train.batch_size=16"]
    return [*settings, *overrides]


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
def test_streamed_training_equals_in_memory_training_bitwise(
    folder: Path, tmp_path: Path, conditional: bool
) -> None:
    """Also for a conditional model: the class folders' labels of the streamed images are
    held in memory and gathered with each batch."""
    runs = {}
    model = [f"model.conditional={str(conditional).lower()}"]
    for setting in ("true", "false"):
        out = tmp_path / f"in-memory-{setting}"
        vaekit.experiment.train(
            folder_config(folder, f"data.in_memory={setting}", *model), out, progress=False
        )
        runs[setting] = out
    held, streamed = runs["true"], runs["false"]
    for name in ("metrics.jsonl", "model.safetensors"):
        assert (held / name).read_bytes() == (streamed / name).read_bytes(), name
    facts = [json.loads((run / "provenance.json").read_text()) for run in (held, streamed)]
    assert facts[0]["dataset_identity"] == facts[1]["dataset_identity"]
    assert (streamed / "samples.png").is_file() and (streamed / "reconstructions.png").is_file()


class Crash(Exception):
    """A power cut straight after a checkpoint."""


def crash_after_checkpoint(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    real = vaekit.training.launch.write_checkpoint

    def checkpoint_then_crash(run: Any, model: Any, state: dict[str, Any], history: Any) -> None:
        real(run, model, state, history)
        if state["cursor"]["step"] == step:
            raise Crash

    monkeypatch.setattr(vaekit.training.launch, "write_checkpoint", checkpoint_then_crash)


def test_cli_trains_streamed_resumes_exactly_and_serves_every_command(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["train", "--config", TINY, "--quiet"]
    for setting in folder_settings(
        folder, "data.in_memory=false", "train.checkpoint_every_steps=2"
    ):
        argv += ["--set", setting]
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert main([*argv, "--out", str(reference)]) == 0
    with monkeypatch.context() as patch:
        crash_after_checkpoint(patch, step=4)  # 3 steps per epoch: mid-way through the second
        with pytest.raises(Crash):
            main([*argv, "--out", str(resumed)])
    assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    for name in ("metrics.jsonl", "model.safetensors"):
        assert (reference / name).read_bytes() == (resumed / name).read_bytes(), name

    run = str(reference)
    out = tmp_path / "figures"
    commands: list[list[str]] = [
        ["sample", run, "--num-samples", "4", "--out", str(out / "s.png")],
        ["sample", run, "--sampler", "markov-chain", "--start", "data", "--num-samples", "3",
         "--steps", "0,2", "--out", str(out / "chain.png")],
        ["reconstruct", run, "--out", str(out / "r.png")],
        ["evaluate", run, "--metrics", "elbo", "--out", str(out / "eval.json")],
    ]  # fmt: skip
    for command in commands:
        assert main(command) == 0, command
    report = json.loads((out / "eval.json").read_text())
    trained = json.loads((reference / "provenance.json").read_text())
    assert report["provenance"]["dataset_identity"] == trained["dataset_identity"]
    assert report["provenance"]["num_points"] == 6  # the whole test split


def test_a_streamed_run_resumes_in_memory(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same folder has the same identity either way, so a run may switch on resume."""
    monkeypatch.setattr(vaekit.experiment, "render_run_figures", lambda *a, **k: [])
    streamed = folder_config(folder, "data.in_memory=false", "train.checkpoint_every_steps=2")
    held = folder_config(folder, "data.in_memory=true", "train.checkpoint_every_steps=2")
    reference, switched = tmp_path / "reference", tmp_path / "switched"
    vaekit.experiment.train(streamed, reference, progress=False)
    with monkeypatch.context() as patch:
        crash_after_checkpoint(patch, step=2)
        with pytest.raises(Crash):
            vaekit.experiment.train(streamed, switched, progress=False)
    vaekit.experiment.train(held, switched, resume=True, progress=False)
    for name in ("metrics.jsonl", "model.safetensors"):
        assert (reference / name).read_bytes() == (switched / name).read_bytes(), name
