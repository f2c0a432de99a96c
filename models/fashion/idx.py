"""Reading Fashion-MNIST / MNIST idx files, shared by train.py and make_frames.py."""

import gzip
import os
import struct

import numpy as np


def read_idx(path):
    """Reads an idx1/idx3 file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, f"{path}: not a uint8 idx file"
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(data_dir, stem):
    """The idx file `stem` (or `stem.gz`) in `data_dir`."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}[.gz] not in {data_dir} (apt-get install dataset-fashion-mnist)")
