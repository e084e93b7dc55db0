"""Loaders: MNIST IDX (gzipped or not) and CIFAR-10 batches written here, the shared t10k
files when present, bad folders as one-line errors, the offline datasets, label noise."""

import gzip
import pickle

import numpy as np
import pytest

from lookinside.errors import UserError
from lookinside.studies.implicit_regularization import data


def write_idx(path, array, gz):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(folder, gz, prefixes=("train", "t10k"), n=20):
    rng = np.random.default_rng(0)
    for prefix in prefixes:
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10, gz)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files(tmp_path, gz):
    write_mnist(tmp_path, gz)
    ds = data.load_mnist(str(tmp_path))
    assert ds.x.shape == (20, 784) and ds.x_test.shape == (20, 784) and ds.x.dtype == np.float32
    assert 0 <= ds.x.min() and ds.x.max() <= 1 and ds.y.tolist() == [i % 10 for i in range(20)]


def test_mnist_with_only_t10k_is_split(tmp_path):
    write_mnist(tmp_path, True, prefixes=("t10k",))
    ds = data.load_mnist(str(tmp_path))
    assert (len(ds.y), len(ds.y_test)) == (16, 4)


def test_shared_mnist_t10k(shared_data):
    folder = shared_data / "mnist"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("no shared MNIST t10k files")
    ds = data.load_mnist(str(folder))
    assert ds.x.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
    assert set(ds.y.tolist()) == set(range(10))


@pytest.mark.parametrize("break_it,needle", [
    (lambda d: None, "no t10k"),
    (lambda d: (d / "t10k-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + b"\0" * 12 + b"x"), "header"),
    (lambda d: (d / "t10k-images-idx3-ubyte").write_bytes(b"garbage"), "IDX"),
])
def test_bad_mnist_folder_is_one_line_naming_it(tmp_path, break_it, needle):
    write_mnist(tmp_path, False, prefixes=())
    if needle != "no t10k":
        write_mnist(tmp_path, False, prefixes=("t10k",))
    break_it(tmp_path)
    with pytest.raises(UserError, match=needle) as err:
        data.load_mnist(str(tmp_path))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def write_cifar(folder, n=6):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}, f)


def test_cifar10_batches(tmp_path):
    write_cifar(tmp_path)
    ds = data.load_cifar10(str(tmp_path))
    assert ds.x.shape == (30, 3072) and ds.x_test.shape == (6, 3072) and ds.y[:6].tolist() == list(range(6))


def test_bad_cifar10_folder_is_one_line(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3"):
        data.load_cifar10(str(tmp_path))
    (tmp_path / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="CIFAR-10 folder"):
        data.load_cifar10(str(tmp_path))


def test_offline_datasets_and_subsets():
    before = np.random.get_state()[1].copy()
    m1d = data.load("mnist1d")
    assert m1d.x.shape == (4000, 40) and m1d.x_test.shape == (1000, 40)
    assert np.array_equal(np.random.get_state()[1], before)      # numpy's global stream left alone
    digits = data.load("digits")
    assert digits.x.shape == (1297, 64) and digits.x_test.shape == (500, 64)
    t = data.load("teacher", data_seed=3)
    assert t.x.shape == (4000, 20) and len(set(t.y.tolist())) > 5
    assert np.array_equal(t.y, data.load("teacher", data_seed=3).y)
    sub = data.subset(digits, 100, 50, 0)
    assert (len(sub.y), len(sub.y_test)) == (100, 50)


def test_label_noise_replaces_the_given_fraction():
    y = np.arange(1000) % 10
    noisy = data.noisy_labels(y, 0.3, 10, seed=0)
    changed = (noisy != y).mean()
    assert 0.25 < changed <= 0.3          # 300 redrawn, about a tenth of them to their own class
    assert np.array_equal(noisy, data.noisy_labels(y, 0.3, 10, seed=0))
    assert not np.array_equal(noisy, data.noisy_labels(y, 0.3, 10, seed=1))
    assert np.array_equal(data.noisy_labels(y, 0.0, 10, seed=0), y)
