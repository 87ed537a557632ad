"""Reader for the IDX format of MNIST and Fashion-MNIST (LeCun et al.), plain or gzipped."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from vaekit.errors import DataError

from .download import write_bytes_atomic

# Third magic byte -> big-endian element type, from the format's description at
# http://yann.lecun.com/exdb/mnist/ ("THE IDX FILE FORMAT").
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_GZIP_MAGIC = b"\x1f\x8b"


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an uncompressed IDX file (atomically); the inverse of ``read_idx``."""
    codes = {np.dtype(code): byte for byte, code in IDX_DTYPES.items()}
    big_endian = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big_endian not in codes or array.ndim > 255:
        raise DataError(f"{path}: IDX cannot store {array.dtype} arrays of rank {array.ndim}")
    header = bytes([0, 0, codes[big_endian], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return write_bytes_atomic(path, header + array.astype(big_endian).tobytes())


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not, told apart by content) into a numpy array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({error}); delete it and fetch it again") from error
    return parse_idx(raw, source=str(path))


def parse_idx(raw: bytes, *, source: str) -> np.ndarray:
    """Decode the bytes of an IDX file: 2 zero bytes, a type byte, a rank byte, dims, data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{source}: not an IDX file (bad magic number); fetch it again")
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    rank = raw[3]
    header_bytes = 4 + 4 * rank
    if len(raw) < header_bytes:
        raise DataError(f"{source}: truncated IDX header; fetch the file again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_bytes != expected:
        raise DataError(
            f"{source}: IDX header promises shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header_bytes} bytes; the file is truncated or corrupt, fetch it again"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)
    # Native byte order, writable: callers hand the array to torch.from_numpy.
    return data.astype(dtype.newbyteorder("="))
