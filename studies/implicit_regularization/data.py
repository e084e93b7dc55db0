"""Datasets, each as float32 features (N, d) scaled to about unit size and int64 labels (N,).

Offline by construction: mnist1d comes from the package's procedural generator (its
download path is never called), digits from the scikit-learn wheel, teacher is drawn here;
MNIST and CIFAR-10 are read from a folder the user has. A folder that is missing files or
holds malformed ones raises a one-line UserError that names it.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle

import numpy as np

from lookinside.errors import UserError

TEACHER_DIM, TEACHER_HIDDEN, TEACHER_CLASSES, TEACHER_N = 20, 32, 10, (4000, 2000)


@dataclasses.dataclass(frozen=True)
class Dataset:
    x: np.ndarray        # (N, d) float32
    y: np.ndarray        # (N,) int64
    x_test: np.ndarray   # (M, d) float32
    y_test: np.ndarray   # (M,) int64
    classes: int


def load(name: str, folder: str | None = None, data_seed: int = 0) -> Dataset:
    if name == "mnist1d":
        return _mnist1d()
    if name == "digits":
        return _digits()
    if name == "teacher":
        return teacher(data_seed)
    if name == "mnist":
        return load_mnist(folder)
    if name == "cifar10":
        return load_cifar10(folder)
    raise ValueError(f"unknown dataset {name!r}")


def _mnist1d() -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset
    state = np.random.get_state()           # make_dataset seeds numpy's global generator
    d = make_dataset(get_dataset_args())    # 5,000 length-40 signals, 80% train; standardised
    np.random.set_state(state)
    return Dataset(d["x"].astype(np.float32), d["y"].astype(np.int64), d["x_test"].astype(np.float32),
                   d["y_test"].astype(np.int64), 10)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)     # 1,797 8x8 images, pixel values 0..16
    x = (x / 16.0).astype(np.float32)
    cut = 1297                              # the last 500 are the test split
    return Dataset(x[:cut], y[:cut].astype(np.int64), x[cut:], y[cut:].astype(np.int64), 10)


def teacher(seed: int) -> Dataset:
    """Labels are the argmax of a random one-hidden-layer ReLU network on N(0, I) inputs."""
    rng = np.random.default_rng([seed, 7])
    x = rng.standard_normal((sum(TEACHER_N), TEACHER_DIM)).astype(np.float32)
    w1 = rng.standard_normal((TEACHER_DIM, TEACHER_HIDDEN)) / np.sqrt(TEACHER_DIM)
    w2 = rng.standard_normal((TEACHER_HIDDEN, TEACHER_CLASSES))
    y = (np.maximum(x @ w1, 0) @ w2).argmax(1).astype(np.int64)
    n = TEACHER_N[0]
    return Dataset(x[:n], y[:n], x[n:], y[n:], TEACHER_CLASSES)


# --- files on disk --------------------------------------------------------------------------

def read_idx(path: str) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array: its header gives the dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"header says {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


def _find(folder: str, stem: str) -> str | None:
    for name in (stem, stem + ".gz"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def _mnist_pair(folder: str, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images, labels = _find(folder, f"{prefix}-images-idx3-ubyte"), _find(folder, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or y.max(initial=0) > 9:
        raise ValueError(f"{prefix} images {x.shape} and labels {y.shape} do not match")
    return (x.reshape(len(x), -1) / np.float32(255)).astype(np.float32), y.astype(np.int64)


def load_mnist(folder: str | None) -> Dataset:
    """MNIST from IDX files; without the training files, the t10k set is split 8,000 / 2,000."""
    try:
        test = _mnist_pair(folder, "t10k")
        if test is None:
            raise ValueError("no t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
        train = _mnist_pair(folder, "train")
    except (OSError, ValueError, EOFError, gzip.BadGzipFile, TypeError) as err:
        raise UserError(f"MNIST folder {folder!r} cannot be read: {err}") from None
    if train is None:
        cut = len(test[0]) * 4 // 5
        train, test = (test[0][:cut], test[1][:cut]), (test[0][cut:], test[1][cut:])
    return Dataset(*train, *test, 10)


def load_cifar10(folder: str | None) -> Dataset:
    """CIFAR-10 from its python batches (pickled dicts of b'data' (N, 3072) uint8, b'labels')."""
    def batch(name):
        with open(os.path.join(folder, name), "rb") as f:
            d = pickle.load(f, encoding="bytes")
        x, y = np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y) or y.max(initial=0) > 9:
            raise ValueError(f"{name}: data {x.shape} and labels {y.shape} are not CIFAR-10's")
        return (x / np.float32(255)).astype(np.float32), y
    try:
        parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
        x_test, y_test = batch("test_batch")
    except (OSError, ValueError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as err:
        raise UserError(f"CIFAR-10 folder {folder!r} cannot be read: {err}") from None
    return Dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                   x_test, y_test, 10)


# --- subsets and label noise -----------------------------------------------------------------

def subset(ds: Dataset, train_size: int, test_size: int, data_seed: int) -> Dataset:
    """train_size and test_size examples (0: all) drawn without replacement by data_seed."""
    rng = np.random.default_rng([data_seed, 11])
    tr = rng.permutation(len(ds.y))[:train_size or None]
    te = rng.permutation(len(ds.y_test))[:test_size or None]
    return Dataset(ds.x[tr], ds.y[tr], ds.x_test[te], ds.y_test[te], ds.classes)


def noisy_labels(y: np.ndarray, fraction: float, classes: int, seed: int) -> np.ndarray:
    """A copy of y whose first round(fraction * N) examples, in a random order drawn by seed,
    get a uniformly random class (which may equal the true one)."""
    rng = np.random.default_rng([seed, 13])
    y = y.copy()
    picked = rng.permutation(len(y))[:round(fraction * len(y))]
    y[picked] = rng.integers(0, classes, len(picked))
    return y
