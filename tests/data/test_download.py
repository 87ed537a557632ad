"""Downloads are checksummed and atomic: a failed one never leaves a file under the final name."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from vaekit.data import download as download_module
from vaekit.data.download import download_file, file_digest
from vaekit.errors import DataError

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB: several chunks


class HalfwayFailure(io.BytesIO):
    """A response that serves its first chunk and then drops the connection."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer")
        return super().read(1000)


def serving(response: io.BytesIO) -> Any:
    def opener(url: str, timeout: float) -> io.BytesIO:
        return response

    return opener


def test_successful_download_verifies_and_lands(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "file.gz"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    sha256 = hashlib.sha256(PAYLOAD).hexdigest()
    download_file(
        "https://x/file.gz", dest, md5=md5, sha256=sha256, opener=serving(io.BytesIO(PAYLOAD))
    )
    assert dest.read_bytes() == PAYLOAD
    assert file_digest(dest, "md5") == md5
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left behind


def test_checksum_mismatch_is_rejected(tmp_path: Path) -> None:
    dest = tmp_path / "file.gz"
    with pytest.raises(DataError, match="md5 checksum mismatch"):
        download_file("https://x/file.gz", dest, md5="0" * 32, opener=serving(io.BytesIO(PAYLOAD)))
    assert list(tmp_path.iterdir()) == []


def test_failure_halfway_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Patch urllib's opener itself, as a flaky network would behave.
    monkeypatch.setattr(download_module.urllib.request, "urlopen", serving(HalfwayFailure(PAYLOAD)))
    dest = tmp_path / "file.gz"
    with pytest.raises(DataError, match=r"could not download .*connection reset"):
        download_file("https://x/file.gz", dest, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_file_survives_failed_redownload(tmp_path: Path) -> None:
    dest = tmp_path / "file.gz"
    dest.write_bytes(b"old")
    with pytest.raises(DataError):
        download_file("https://x/file.gz", dest, opener=serving(HalfwayFailure(PAYLOAD)))
    assert dest.read_bytes() == b"old"
