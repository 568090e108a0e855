"""Data loaders read small files written here in the real on-disk formats (no network)."""

from __future__ import annotations

import gzip
import io
import logging
import pickle
import shutil
import struct
import warnings
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets as tvd

from dal_runner.data import Normalize, npz, openml, torchvision_sets
from dal_runner.errors import ConfigError

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- writers of the real formats
def write_cifar(root: Path, name: str, n_test: int = 10):
    """Pickled dicts as in the official python archives; returns (train, test) as (x, y)."""
    if name == "cifar10":
        folder, train_files, test_file, label_key, n_classes = (
            root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10)
        meta_file, meta = "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    else:
        folder, train_files, test_file, label_key, n_classes = (
            root / "cifar-100-python", ["train"], "test", "fine_labels", 100)
        meta_file, meta = "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                   "coarse_label_names": [f"c{i}" for i in range(20)]}
    folder.mkdir(parents=True)

    def batch(path: Path, n: int):
        data = RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in RNG.integers(0, n_classes, size=n)]
        entry = {"batch_label": path.name, label_key: labels, "data": data,
                 "filenames": [f"img{i}.png" for i in range(n)]}
        if name == "cifar100":
            entry["coarse_labels"] = [v // 5 for v in labels]
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        return data, np.array(labels)

    train = [batch(folder / f, 20 // len(train_files)) for f in train_files]  # 20 pool images
    test = batch(folder / test_file, n_test)
    with open(folder / meta_file, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    x_train = np.concatenate([d for d, _ in train]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), (test[0].reshape(-1, 3, 32, 32), test[1])


def write_svhn(root: Path, sizes=(("train", 30), ("test", 12), ("extra", 8))):
    """MATLAB files as in ufldl's release: X is 32 x 32 x 3 x N uint8, y is N x 1 in 1..10."""
    folder = root / "SVHN"
    folder.mkdir(parents=True)
    out = {}
    for split, n in sizes:
        x = RNG.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = RNG.integers(1, 11, size=(n, 1)).astype(np.uint8)
        y[0, 0] = 10  # make sure the digit 0 occurs
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y[:, 0])
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, folder: str, gz: bool, n_train: int = 40, n_test: int = 20):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = RNG.integers(0, 10, size=n).astype(np.uint8)
        for kind, array in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
            data = idx_bytes(array)
            if gz:
                (raw / f"{prefix}-{kind}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / f"{prefix}-{kind}").write_bytes(data)
        out[prefix] = (x, y)
    return out


def expected_stats(x: np.ndarray, scale: float = 255.0):
    values = x.astype(np.float64) / scale
    return values.mean(axis=(0, 2, 3)), values.std(axis=(0, 2, 3))


# ---------------------------------------------------------------- torchvision sets
@pytest.mark.parametrize("name, n_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_pickled_batches_load_as_uint8_nchw_with_train_stats(tmp_path, name, n_classes):
    (x_train, y_train), (x_test, y_test) = write_cifar(tmp_path, name)
    data = torchvision_sets.load(name, tmp_path)
    assert data.name == name and data.n_classes == n_classes and data.scale == 255.0
    assert data.x_train.dtype == torch.uint8 and tuple(data.x_train.shape) == (20, 3, 32, 32)
    assert data.x_test.shape == (10, 3, 32, 32) and data.y_train.dtype == torch.int64
    np.testing.assert_array_equal(data.x_train.numpy(), x_train)
    np.testing.assert_array_equal(data.y_train.numpy(), y_train)
    np.testing.assert_array_equal(data.x_test.numpy(), x_test)
    np.testing.assert_array_equal(data.y_test.numpy(), y_test)
    mean, std = expected_stats(x_train)
    np.testing.assert_allclose(data.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(data.std, std, rtol=1e-10)


def test_cifar100_coarse_labels_are_the_20_superclasses_of_the_same_files(tmp_path):
    (x_train, y_fine), (_, y_test_fine) = write_cifar(tmp_path, "cifar100")
    data = torchvision_sets.load("cifar100", tmp_path, labels="coarse")
    assert data.n_classes == 20
    np.testing.assert_array_equal(data.x_train.numpy(), x_train)
    np.testing.assert_array_equal(data.y_train.numpy(), y_fine // 5)  # how write_cifar made its superclasses
    np.testing.assert_array_equal(data.y_test.numpy(), y_test_fine // 5)
    with pytest.raises(ConfigError, match=r"dataset.labels=coarse: unknown option; accepted: one of fine"):
        torchvision_sets.load("cifar10", tmp_path, labels="coarse")


def test_cifar_pixel_order_matches_torchvision_hwc_view(tmp_path):
    """torchvision's .data is the same rows reshaped to N x 3 x 32 x 32 then moved to HWC."""
    write_cifar(tmp_path, "cifar10")
    data = torchvision_sets.load("cifar10", tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][0]
    # row = red plane (32 x 32, row-major), then green, then blue
    assert data.x_train[0, 1, 2, 3] == row[1 * 1024 + 2 * 32 + 3]


def test_svhn_mat_files_map_label_10_to_0_and_transpose_to_nchw(tmp_path):
    written = write_svhn(tmp_path)
    data = torchvision_sets.load("svhn", tmp_path)
    x, y = written["train"]
    assert tuple(data.x_train.shape) == (30, 3, 32, 32) and data.x_train.dtype == torch.uint8
    np.testing.assert_array_equal(data.x_train.numpy(), x.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(data.y_train.numpy(), np.where(y == 10, 0, y))
    assert data.y_train[0] == 0 and int(data.y_train.max()) <= 9
    assert tuple(data.x_test.shape) == (12, 3, 32, 32)
    np.testing.assert_allclose(data.mean, expected_stats(x.transpose(3, 2, 0, 1))[0], rtol=1e-10)
    # rows in memory order, as the pool's batches are gathered (MATLAB's order was kept before)
    assert data.x_train.is_contiguous() and data.x_test.is_contiguous()


def test_svhn_extra_is_appended_to_the_pool_only(tmp_path):
    written = write_svhn(tmp_path)
    data = torchvision_sets.load("svhn", tmp_path, include_extra=True)
    assert len(data.x_train) == 30 + 8 and len(data.x_test) == 12
    np.testing.assert_array_equal(data.x_train[30:].numpy(), written["extra"][0].transpose(3, 2, 0, 1))
    pool = np.concatenate([written["train"][0], written["extra"][0]], axis=3).transpose(3, 2, 0, 1)
    np.testing.assert_allclose(data.std, expected_stats(pool)[1], rtol=1e-10)
    assert data.x_train.is_contiguous()


@pytest.mark.parametrize("name, folder, gz", [("mnist", "MNIST", True), ("mnist", "MNIST", False),
                                              ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_like_idx_files_raw_or_gzipped(tmp_path, name, folder, gz):
    written = write_mnist(tmp_path, folder, gz)
    data = torchvision_sets.load(name, tmp_path)
    assert tuple(data.x_train.shape) == (40, 1, 28, 28) and tuple(data.x_test.shape) == (20, 1, 28, 28)
    np.testing.assert_array_equal(data.x_train[:, 0].numpy(), written["train"][0])
    np.testing.assert_array_equal(data.y_test.numpy(), written["t10k"][1])
    assert data.n_classes == 10 and len(data.mean) == 1
    normalized = Normalize(data.scale, data.mean, data.std, data.is_image)(data.x_train)
    assert abs(float(normalized.mean())) < 1e-5 and abs(float(normalized.std(unbiased=False)) - 1) < 1e-5


def test_mnist_reads_the_same_files_torchvision_reads(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False)
    ours = torchvision_sets.load("mnist", tmp_path)
    theirs = tvd.MNIST(str(tmp_path), train=True)
    assert torch.equal(ours.x_train[:, 0], theirs.data) and torch.equal(ours.y_train, theirs.targets)


def test_missing_files_name_root_the_expected_files_and_download(tmp_path):
    with pytest.raises(ConfigError) as err:
        torchvision_sets.load("cifar10", tmp_path)
    message = str(err.value)
    assert err.value.key == "dataset.root" and str(tmp_path) in message
    assert "cifar-10-batches-py/data_batch_1" in message and "test_batch" in message
    assert "dataset.download=true" in message and "\n" not in message


def test_missing_mnist_lists_raw_or_gz_names(tmp_path):
    with pytest.raises(ConfigError, match=r"MNIST/raw/train-images-idx3-ubyte\[\.gz\]"):
        torchvision_sets.load("mnist", tmp_path)


def test_svhn_files_straight_in_the_root_as_torchvision_writes_them_are_read(tmp_path):
    written = write_svhn(tmp_path / "cache", sizes=(("train", 6), ("test", 4)))
    (tmp_path / "cache" / "SVHN").rename(tmp_path / "tv")  # torchvision.datasets.SVHN(root=tv)'s layout
    data = torchvision_sets.load("svhn", tmp_path / "tv")
    assert torch.equal(data.x_train, torch.from_numpy(written["train"][0].transpose(3, 2, 0, 1)))
    with pytest.raises(ConfigError, match=r"svhn files missing: extra_32x32.mat;"):
        torchvision_sets.load("svhn", tmp_path / "tv", include_extra=True)


def test_files_gzipped_or_one_folder_off_are_pointed_to(tmp_path):
    """A gzipped CIFAR batch passed the check that files are there, then was called corrupt; a root set
    to cifar-10-batches-py itself said only 'no cifar10 files there'."""
    write_cifar(tmp_path, "cifar10")
    batches = tmp_path / "cifar-10-batches-py"
    with pytest.raises(ConfigError) as err:
        torchvision_sets.load("cifar10", batches)
    assert f"no cifar10 files there (they are under the folder above it: dataset.root={tmp_path})" in str(err.value)
    write_svhn(tmp_path / "svhn", sizes=(("train", 4), ("test", 4), ("extra", 4)))
    (tmp_path / "svhn" / "inner").mkdir()  # a folder beside SVHN/: the files are under the one above
    with pytest.raises(ConfigError, match="they are under the folder above it"):  # with extra asked for too
        torchvision_sets.load("svhn", tmp_path / "svhn" / "inner", include_extra=True)
    first = batches / "data_batch_1"
    first.with_name("data_batch_1.gz").write_bytes(gzip.compress(first.read_bytes()))
    first.unlink()
    with pytest.raises(ConfigError) as err:
        torchvision_sets.check_files("cifar10", tmp_path)
    assert ("cifar10 files missing: cifar-10-batches-py/data_batch_1 (cifar-10-batches-py/data_batch_1.gz found: "
            "decompress them)") in str(err.value)


def _mnist_without_raw(root):
    write_mnist(root, "MNIST", gz=False)
    for path in (root / "MNIST" / "raw").iterdir():
        path.rename(root / "MNIST" / path.name)


def _mnist_dotted(root):
    write_mnist(root, "MNIST", gz=True)
    for path in (root / "MNIST" / "raw").iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))


def _cifar_archive(root):
    import tarfile

    write_cifar(root, "cifar10")
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(root / "cifar-10-batches-py")


@pytest.mark.parametrize("name, make, root, says", [
    ("mnist", _mnist_without_raw, "", "(MNIST/train-images-idx3-ubyte found with 3 more: move them into MNIST/raw/)"),
    ("mnist", _mnist_dotted, "", "(MNIST/raw/train-images.idx3-ubyte.gz found with 3 more, named with .idx where "
                                 "torchvision's names have -idx: rename them, e.g. to train-images-idx3-ubyte)"),
    ("mnist", lambda r: write_mnist(r, "MNIST", gz=True), "MNIST/raw", "(they are under two folders above it: "
                                                                       "dataset.root={root})"),
    ("cifar10", _cifar_archive, "", "(cifar-10-python.tar.gz found: extract it there, tar -xzf "
                                    "{root}/cifar-10-python.tar.gz -C {root})"),
])
def test_files_nearly_in_torchvisions_layout_are_pointed_to(tmp_path, name, make, root, says):
    # before: only "no mnist files there" and the list of the files expected
    make(tmp_path)
    with pytest.raises(ConfigError) as err:
        torchvision_sets.check_files(name, tmp_path / root)
    assert f"no {name} files there {says.format(root=tmp_path)}" in str(err.value)


def test_missing_svhn_extra_is_reported_when_asked_for(tmp_path):
    write_svhn(tmp_path, sizes=(("train", 5), ("test", 5)))
    torchvision_sets.load("svhn", tmp_path)
    with pytest.raises(ConfigError, match="svhn files missing: SVHN/extra_32x32.mat;"):
        torchvision_sets.load("svhn", tmp_path, include_extra=True)


def test_truncated_cifar_batch_is_a_config_error_naming_the_file(tmp_path):
    write_cifar(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ConfigError, match="data_batch_3 is truncated, corrupt or not the official"):
        torchvision_sets.load("cifar10", tmp_path)


def test_cifar_batch_of_the_wrong_shape_is_rejected(tmp_path):
    write_cifar(tmp_path, "cifar100")
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump({"data": np.zeros((3, 1000), np.uint8), "fine_labels": [0, 1, 2]}, f)
    with pytest.raises(ConfigError, match=r"cifar-100-python/test is truncated, corrupt or not the official.*N x 3072"):
        torchvision_sets.load("cifar100", tmp_path)


def test_cifar_labels_out_of_range_are_rejected(tmp_path):
    write_cifar(tmp_path, "cifar10")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 10]}, f)
    with pytest.raises(ConfigError, match=r"labels should lie in 0..9"):
        torchvision_sets.load("cifar10", tmp_path)


def test_cifar_labels_that_are_not_whole_numbers_are_rejected_not_truncated(tmp_path):
    write_cifar(tmp_path, "cifar10")
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": np.array([0.5, 1.5])}, f)
    with pytest.raises(ConfigError, match=r"labels are not whole numbers \(e.g. 0.5\)"):
        torchvision_sets.load("cifar10", tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_svhn_mat_is_a_config_error_naming_the_file(tmp_path, damage):
    write_svhn(tmp_path)
    path = tmp_path / "SVHN" / "test_32x32.mat"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2] if damage == "truncate" else b"not a matlab file" * 20)
    with pytest.raises(ConfigError, match="test_32x32.mat is truncated, corrupt or not the official"):
        torchvision_sets.load("svhn", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_file_is_a_config_error_naming_the_file(tmp_path, gz):
    write_mnist(tmp_path, "MNIST", gz)
    path = tmp_path / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - 100])
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte.* is truncated, corrupt or not the official"):
        torchvision_sets.load("mnist", tmp_path)


def test_idx_file_with_a_wrong_magic_number_is_rejected(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros((20, 28, 28), np.uint8)))  # an image file under a label name
    with pytest.raises(ConfigError, match="magic number should be 0x00000801"):
        torchvision_sets.load("mnist", tmp_path)


def test_download_goes_through_torchvision_and_then_reads_the_files(tmp_path, monkeypatch):
    calls = []

    def fake_cifar(self, root, train=True, download=False, **kwargs):  # stands in for the network
        calls.append((root, train, download))
        write_cifar(Path(root), "cifar10")

    monkeypatch.setattr(tvd.CIFAR10, "__init__", fake_cifar)
    data = torchvision_sets.load("cifar10", tmp_path / "cache", download=True)
    assert calls == [(str(tmp_path / "cache"), True, True)] and len(data.x_train) == 20
    torchvision_sets.load("cifar10", tmp_path / "cache", download=True)
    assert len(calls) == 1  # files present: nothing fetched again


def test_failed_download_is_a_config_error_on_dataset_download(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(ConfigError) as err:
        torchvision_sets.load("mnist", tmp_path, download=True)
    assert err.value.key == "dataset.download"
    assert "Name or service not known" in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize("stop", [URLError("Connection reset by peer"), KeyboardInterrupt()])
def test_a_download_cut_off_leaves_nothing_behind(tmp_path, monkeypatch, stop):
    # an older file under the root stays; the partial file and the folders the download made go
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "notes.txt").write_text("mine")

    def cut_off(self, root, split="train", download=False, **kwargs):
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / f"{split}_32x32.mat").write_bytes(b"\0" * 1000)  # the first bytes of it
        raise stop

    monkeypatch.setattr(tvd.SVHN, "__init__", cut_off)
    with pytest.raises(ConfigError if isinstance(stop, URLError) else KeyboardInterrupt):
        torchvision_sets.load("svhn", tmp_path / "cache", download=True)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == ["notes.txt"]
    # a root the download made goes too, with the parents it made for it
    with pytest.raises(ConfigError if isinstance(stop, URLError) else KeyboardInterrupt):
        torchvision_sets.load("svhn", tmp_path / "new" / "cache", download=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_svhn_download_fetches_only_the_missing_split(tmp_path, monkeypatch):
    write_svhn(tmp_path, sizes=(("train", 4), ("test", 4)))
    fetched = []

    def fake_svhn(self, root, split="train", download=False, **kwargs):
        fetched.append((split, download))
        write_svhn(tmp_path / "staging", sizes=((split, 6),))
        (tmp_path / "staging" / "SVHN" / f"{split}_32x32.mat").rename(Path(root) / f"{split}_32x32.mat")

    monkeypatch.setattr(tvd.SVHN, "__init__", fake_svhn)
    data = torchvision_sets.load("svhn", tmp_path, download=True, include_extra=True)
    assert fetched == [("extra", True)] and len(data.x_train) == 4 + 6


def test_unknown_name_and_extra_outside_svhn_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="dataset.name=imagenet"):
        torchvision_sets.load("imagenet", tmp_path)
    with pytest.raises(ConfigError, match="dataset.extra=True: only svhn"):
        torchvision_sets.load("cifar10", tmp_path, include_extra=True)


def test_default_root_is_the_cache_folder_unless_dal_data_root_is_set(monkeypatch, tmp_path):
    monkeypatch.delenv("DAL_DATA_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert torchvision_sets.default_root() == tmp_path / ".cache" / "dal-runner"
    monkeypatch.setenv("DAL_DATA_ROOT", str(tmp_path / "data"))
    assert torchvision_sets.default_root() == tmp_path / "data"
    write_svhn(tmp_path / "data", sizes=(("train", 3), ("test", 3)))
    assert len(torchvision_sets.load("svhn").x_train) == 3  # root=None reads the default root


# ---------------------------------------------------------------- npz
def test_npz_channel_last_and_channel_first_give_the_same_uint8_tensors(tmp_path):
    x = RNG.integers(0, 256, size=(24, 3, 8, 8), dtype=np.uint8)
    y = np.repeat(np.arange(3), 8)
    xt, yt = RNG.integers(0, 256, size=(6, 3, 8, 8), dtype=np.uint8), np.arange(6) % 3
    np.savez(tmp_path / "first.npz", x=x, y=y, x_test=xt, y_test=yt)
    np.savez(tmp_path / "last.npz", x=x.transpose(0, 2, 3, 1), y=y, x_test=xt.transpose(0, 2, 3, 1), y_test=yt)
    first, last = npz.load(tmp_path / "first.npz", 0.3, 0), npz.load(tmp_path / "last.npz", 0.3, 0)
    for data in (first, last):
        assert data.x_train.dtype == torch.uint8 and data.scale == 255.0 and data.n_classes == 3
        np.testing.assert_array_equal(data.x_train.numpy(), x)
        np.testing.assert_array_equal(data.x_test.numpy(), xt)
    assert first.mean == last.mean and np.allclose(first.mean, expected_stats(x)[0])
    assert first.name == "npz-first"


@pytest.mark.parametrize("channels, side", [(2, 12), (13, 64)])  # two bands, a multispectral stack
def test_npz_channels_last_with_any_channel_count_is_read_as_channels_last(tmp_path, channels, side):
    x = RNG.integers(0, 256, size=(24, channels, side, side), dtype=np.uint8)  # stored N x H x W x C below
    y = np.repeat(np.arange(3), 8)
    np.savez(tmp_path / "last.npz", x=x.transpose(0, 2, 3, 1), y=y, x_test=x[:6].transpose(0, 2, 3, 1), y_test=y[:6])
    np.savez(tmp_path / "first.npz", x=x, y=y, x_test=x[:6], y_test=y[:6])
    for name in ("last", "first"):
        data = npz.load(tmp_path / f"{name}.npz", 0.3, 0)
        assert data.input_shape == (channels, side, side)
        np.testing.assert_array_equal(data.x_train.numpy(), x)
    # dataset.layout overrides the rule: the channels-last file read as channels first is H x W x C
    assert npz.load(tmp_path / "last.npz", 0.3, 0, "channels_first").input_shape == (side, side, channels)
    assert npz.load(tmp_path / "first.npz", 0.3, 0, "channels_last").input_shape == (side, channels, side)
    with pytest.raises(ConfigError, match="dataset.layout=nhwc: accepted: one of auto, channels_first, channels_last"):
        npz.load(tmp_path / "last.npz", 0.3, 0, "nhwc")


def test_npz_layout_rule_finds_the_image_sides_and_channels_first_where_all_are_equal():
    assert npz.channels_last((10, 32, 32, 3)) and npz.channels_last((10, 12, 12, 2))
    assert not npz.channels_last((10, 3, 32, 32)) and not npz.channels_last((10, 13, 64, 64))
    # more channels than pixels per side: the square sides tell (feature maps, hyperspectral cubes)
    assert not npz.channels_last((10, 64, 8, 8)) and not npz.channels_last((10, 200, 16, 16))
    assert npz.channels_last((10, 16, 16, 200))
    # not square: the last axis is the channels only where it is shorter than both others
    assert npz.channels_last((10, 32, 64, 3)) and npz.channels_last((10, 5, 6, 4))
    assert not npz.channels_last((10, 3, 32, 64))
    assert not npz.channels_last((10, 8, 8, 8))  # all equal: channels first (dataset.layout decides otherwise)
    assert npz.channels_last((10, 8, 8, 8), "channels_last") and not npz.channels_last((10, 32, 32, 3), "channels_first")
    assert not npz.channels_last((10, 28, 28))  # grey images and tables have no channel axis to place


def test_a_layout_given_against_the_shape_is_read_as_given_with_a_warning(tmp_path, caplog):
    np.savez(tmp_path / "rgb.npz", x=RNG.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8), y=np.arange(30) % 3)
    with caplog.at_level("WARNING", logger="dal_runner"):
        assert npz.load(tmp_path / "rgb.npz", 0.3, 0, layout="channels_last").input_shape == (3, 16, 16)
        assert not caplog.records  # as the shape suggests: no word
        assert npz.load(tmp_path / "rgb.npz", 0.3, 0, layout="channels_first").input_shape == (16, 16, 3)
    (record,) = caplog.records
    assert record.getMessage() == ("rgb.npz: dataset.layout=channels_first reads x as 16 channel(s) of 16 x 3 "
                                   "images; the shape suggests channels last (dataset.layout=auto)")
    np.savez(tmp_path / "cube.npz", x=RNG.integers(0, 256, (30, 8, 8, 8), dtype=np.uint8), y=np.arange(30) % 3)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dal_runner"):  # all sides equal: only the layout given can say
        npz.load(tmp_path / "cube.npz", 0.3, 0, layout="channels_last")
    assert not caplog.records


def test_npz_rgba_images_channels_last_have_four_channels(tmp_path):
    x = RNG.integers(0, 256, size=(12, 5, 6, 4), dtype=np.uint8)  # N x H x W x RGBA
    np.savez(tmp_path / "rgba.npz", x=x, y=np.arange(12) % 2)
    data = npz.load(tmp_path / "rgba.npz", 0.25, 0)
    assert data.input_shape == (4, 5, 6) and len(data.mean) == 4


def test_npz_grey_images_get_a_channel_and_float_images_keep_scale_one(tmp_path):
    x = RNG.random((20, 6, 6)).astype(np.float64)
    np.savez(tmp_path / "grey.npz", x=x, y=np.arange(20) % 2)
    data = npz.load(tmp_path / "grey.npz", 0.25, 0)
    assert data.x_train.dtype == torch.float32 and data.scale == 1.0 and data.input_shape == (1, 6, 6)
    assert len(data.x_train) == 15 and len(data.x_test) == 5
    np.testing.assert_allclose(data.mean, expected_stats(data.x_train.numpy().astype(np.float64), 1.0)[0])


def test_npz_integer_images_within_0_255_are_stored_as_uint8(tmp_path):
    np.savez(tmp_path / "ints.npz", x=RNG.integers(0, 256, size=(10, 1, 4, 4)), y=np.arange(10) % 2)
    assert npz.load(tmp_path / "ints.npz", 0.2, 0).x_train.dtype == torch.uint8


def test_npz_table_split_is_stratified_seeded_and_standardised_by_the_pool(tmp_path):
    x = RNG.normal(5.0, 3.0, size=(60, 4)).astype(np.float64)
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "table.npz", x=x, y=y)
    data = npz.load(tmp_path / "table.npz", 0.25, 7)
    again, other = npz.load(tmp_path / "table.npz", 0.25, 7), npz.load(tmp_path / "table.npz", 0.25, 8)
    assert data.x_train.dtype == torch.float32 and data.scale == 1.0 and data.input_shape == (4,)
    assert len(data.x_test) == 15 and np.bincount(data.y_test.numpy()).tolist() == [5, 5, 5]
    assert torch.equal(data.x_test, again.x_test) and not torch.equal(data.x_test, other.x_test)
    pool = data.x_train.numpy().astype(np.float64)
    np.testing.assert_allclose(data.mean, pool.mean(0), rtol=1e-6)
    np.testing.assert_allclose(data.std, pool.std(0), rtol=1e-6)
    normalized = Normalize(data.scale, data.mean, data.std, data.is_image)(data.x_train)
    np.testing.assert_allclose(normalized.mean(0).numpy(), 0.0, atol=1e-5)


def _npz_error(tmp_path, match, key="dataset.path", **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match=match) as err:
        npz.load(path, 0.3, 0)
    assert err.value.key == key and "\n" not in str(err.value)


X10 = np.zeros((10, 3), np.float32)
Y10 = np.arange(10) % 2


@pytest.mark.parametrize("arrays, match", [
    (dict(x=X10), "missing array\\(s\\) y; the file has x"),
    (dict(X=X10, y=Y10), "missing array\\(s\\) x; the file has X, y"),
    (dict(x=X10, y=Y10[:9]), "x has 10 examples but y has 9 labels"),
    (dict(x=X10, y=Y10 + 0.5), "y must hold integer class labels"),
    (dict(x=X10, y=np.arange(10) % 2 * 2), "contiguous 0..K-1.*class\\(es\\) \\[1\\] absent"),
    (dict(x=X10, y=np.zeros(10, int)), "contiguous 0..K-1"),
    (dict(x=np.full((10, 3), np.nan), y=Y10), "x holds 30 NaN or infinite"),
    (dict(x=np.full((10, 3), 1e39), y=Y10), "x holds 30 value\\(s\\) beyond float32's range"),
    # a hashed id as a label: the absent classes are listed without a list of 10**12 classes
    (dict(x=X10, y=np.array([0, 1, 2, 10**12] * 2 + [0, 1])), "y has 0..1000000000000, class\\(es\\) \\[3, 4, 5"),
    (dict(x=np.zeros(10), y=Y10), "x has 1 dimensions"),
    (dict(x=np.zeros((10, 1, 2, 2, 2)), y=Y10), "x has 5 dimensions"),
    (dict(x=np.array(["a"] * 10), y=Y10), "dtype <U1; numbers are needed"),
    (dict(x=X10, y=Y10, x_test=np.zeros((4, 5)), y_test=np.arange(4) % 2), "x_test is \\(4, 5\\) but x is \\(10, 3\\)"),
    (dict(x=X10, y=Y10, x_test=np.zeros((4, 3))), "x_test is given without its partner"),
    (dict(x=X10, y=Y10, x_test=np.zeros((4, 3)), y_test=np.array([0, 1, 2, 0])), "y_test has labels 0..2 outside"),
    (dict(x=np.zeros((10, 1, 2, 2), np.uint8), y=Y10, x_test=np.zeros((2, 1, 2, 2)), y_test=[0, 1]),
     "x is uint8 but x_test is float64"),
    # a misspelt test split was ignored, and the test split drawn from x without a word
    (dict(x=X10, y=Y10, xtest=np.zeros((4, 3)), ytest=np.arange(4) % 2), "array\\(s\\) xtest, ytest would not be read"),
    (dict(x=X10, y=Y10, X_val=np.zeros((4, 3))), "X_val would not be read.*x_test and y_test"),
])
def test_npz_bad_contents_are_one_line_config_errors(tmp_path, arrays, match):
    _npz_error(tmp_path, match, **arrays)


def test_npz_class_with_one_example_cannot_be_split(tmp_path):
    _npz_error(tmp_path, "cannot split .* stratified", key="dataset.test_fraction",
               x=X10, y=np.array([0] * 9 + [1]))


def test_npz_missing_or_foreign_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="dataset.path=.*nope.npz: file not found"):
        npz.load(tmp_path / "nope.npz", 0.3, 0)
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    with pytest.raises(ConfigError, match="not an .npz file \\(it begins b'x,y\\\\n1,'; numpy.savez writes a zip"):
        npz.load(tmp_path / "text.npz", 0.3, 0)  # not numpy's pickle message, which misleads
    np.save(tmp_path / "single.npy", X10)
    with pytest.raises(ConfigError, match="a single .npy array"):
        npz.load(tmp_path / "single.npy", 0.3, 0)
    np.savez(tmp_path / "cut.npz", x=np.zeros((100, 50)), y=np.arange(100) % 2)
    content = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(content[: len(content) // 2])
    with pytest.raises(ConfigError, match="not an .npz file"):
        npz.load(tmp_path / "cut.npz", 0.3, 0)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (600, (2), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    with zipfile.ZipFile(tmp_path / "header.npz", "w") as archive:  # a damaged header: Python's tokenizer fails
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(48))
        archive.writestr("y.npy", _npy_bytes(Y10))
    with pytest.raises(ConfigError, match=r"array x cannot be read \(TokenError"):
        npz.load(tmp_path / "header.npz", 0.3, 0)
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 10, dtype=object), y=Y10)
    with pytest.raises(ConfigError, match="array x cannot be read"):
        npz.load(tmp_path / "objects.npz", 0.3, 0)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# ---------------------------------------------------------------- OpenML
def openml_bunch(n: int = 60, target_kind: str = "category"):
    """What fetch_openml(as_frame=True) returns: a Bunch of a DataFrame and a target Series."""
    pd = pytest.importorskip("pandas")
    from sklearn.utils import Bunch

    rng = np.random.default_rng(1)
    age = rng.normal(40, 10, n)
    age[[0, 5, 9]] = np.nan
    colour = pd.Series(rng.choice(["red", "green", "blue"], n)).astype("category")
    colour[[1, 2]] = np.nan
    frame = pd.DataFrame({
        "age": age,
        "count": pd.array(rng.integers(0, 9, n), dtype="Int64"),
        "colour": colour,
        "city": rng.choice(["paris", "rome"], n).astype(object),
    })
    if target_kind == "category":
        target = pd.Series(np.repeat(["a", "b", "c"], n // 3), name="class").astype("category")
    else:
        target = pd.Series(rng.normal(size=n), name="price")
    return Bunch(data=frame, target=target, frame=None, feature_names=list(frame.columns),
                 target_names=[target.name], DESCR="synthetic", details={"id": 6})


def test_openml_table_is_imputed_encoded_standardised_and_split_by_seed(tmp_path, monkeypatch):
    bunch = openml_bunch()
    calls = []

    def fake_fetch(**kwargs):
        calls.append(kwargs)
        return bunch

    monkeypatch.setattr(openml, "fetch_openml", fake_fetch)
    data = openml.load(6, tmp_path, 0.25, seed=3)
    assert calls == [dict(data_id=6, data_home=str(tmp_path), as_frame=True, parser="auto")]
    # 2 numeric columns + one-hot colour (3) + one-hot city (2)
    assert data.x_train.dtype == torch.float32 and data.input_shape == (7,) and data.n_classes == 3
    assert len(data.x_train) == 45 and np.bincount(data.y_test.numpy()).tolist() == [5, 5, 5]
    x = data.x_train.numpy()
    assert np.isfinite(x).all() and np.isfinite(data.x_test.numpy()).all()
    np.testing.assert_allclose(x[:, :2].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :2].std(0), 1.0, atol=1e-5)
    assert set(np.unique(x[:, 2:])) <= {0.0, 1.0} and np.all(x[:, 2:5].sum(1) == 1)
    assert data.mean == (0.0,) * 7 and data.std == (1.0,) * 7 and data.scale == 1.0
    assert data.name == "openml-6"
    again, other = openml.load(6, tmp_path, 0.25, seed=3), openml.load(6, tmp_path, 0.25, seed=4)
    assert torch.equal(data.y_test, again.y_test) and torch.equal(data.x_test, again.x_test)
    assert not torch.equal(data.x_test, other.x_test)


def test_openml_offline_without_cache_names_id_and_root(tmp_path, monkeypatch):
    def offline(**kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(openml, "fetch_openml", offline)
    with pytest.raises(ConfigError) as err:
        openml.load(6, tmp_path, 0.3, 0)
    assert err.value.key == "dataset.id" and "dataset.root=" + str(tmp_path) in str(err.value)


def test_a_failed_openml_fetch_leaves_no_folders_and_no_retry_warnings(tmp_path, monkeypatch, recwarn):
    def offline(data_home, **kwargs):  # as scikit-learn does offline: makes its cache folder, warns, retries
        (Path(data_home) / "openml" / "openml.org").mkdir(parents=True)
        warnings.warn("A network error occurred while downloading https://api.openml.org. Retrying...", UserWarning)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(openml, "fetch_openml", offline)
    root = tmp_path / "new-root"
    with pytest.raises(ConfigError):
        openml.load(6, root, 0.3, 0)
    assert not root.exists() and not [w for w in recwarn if "network error" in str(w.message)]
    kept = tmp_path / "kept"  # a root that held a file before is left as it was
    (kept / "openml").mkdir(parents=True)
    (kept / "openml" / "other.txt").write_text("mine")
    with pytest.raises(ConfigError):
        openml.load(6, kept, 0.3, 0)
    assert (kept / "openml" / "other.txt").read_text() == "mine"


def test_an_openml_root_that_is_a_file_is_named_and_a_failed_fetch_removes_the_parents_it_made(
        tmp_path, monkeypatch):
    def offline(data_home, **kwargs):
        (Path(data_home) / "openml").mkdir(parents=True, exist_ok=True)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(openml, "fetch_openml", offline)
    (tmp_path / "afile").write_text("")
    for root, why in ((tmp_path / "afile", "this is a file"), (tmp_path / "afile" / "x", f"{tmp_path}/afile is a file")):
        with pytest.raises(ConfigError) as err:
            openml.load(61, root, 0.3, 0)
        assert str(err.value) == f"dataset.root={root}: {why}; accepted: a folder (the data cache)"
    with pytest.raises(ConfigError, match="dataset.id=61"):
        openml.load(61, tmp_path / "new" / "deeper" / "root", 0.3, 0)
    assert not (tmp_path / "new").exists()


def test_openml_regression_target_and_bad_ids_are_config_errors(tmp_path, monkeypatch):
    bunch = openml_bunch(target_kind="regression")
    monkeypatch.setattr(openml, "fetch_openml", lambda **kwargs: bunch)
    with pytest.raises(ConfigError, match="regression"):
        openml.load(42, tmp_path, 0.3, 0)
    for bad in (0, -3, "six", True):
        with pytest.raises(ConfigError, match="dataset.id"):
            openml.load(bad, tmp_path, 0.3, 0)
    with pytest.raises(ConfigError, match="dataset.test_fraction"):
        openml.load(6, tmp_path, 1.5, 0)


# ---------------------------------------------------------------- configs
CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "mnist", "fashion_mnist", "openml", "npz"])
def test_dataset_yaml_starts_with_a_description_and_its_schema(name):
    from omegaconf import OmegaConf

    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.defaults[0] == f"/schema/dataset/{name}@_here_" and cfg.name == name


def test_openml_failures_say_which_failure_it_was(tmp_path, monkeypatch, recwarn):
    def damaged(**kwargs):  # scikit-learn on a cached file it cannot read: warns, removes it, fetches again
        warnings.warn("Invalid cache, redownloading file", RuntimeWarning)
        raise URLError("[Errno -2] Name or service not known")

    class OpenMLError(ValueError):  # scikit-learn's, for OpenML's own error answers
        pass

    def unknown(**kwargs):
        raise OpenMLError("Dataset 999999 not found")

    def sparse(**kwargs):
        raise ValueError("Sparse ARFF datasets cannot be loaded with as_frame=True.")

    cases = {damaged: "the cached copy of OpenML data set 6 under dataset.root=",
             unknown: "OpenML answered: OpenMLError: Dataset 999999 not found",
             sparse: "OpenML data set 6 could not be read as a table (ValueError: Sparse ARFF"}
    for fetch, message in cases.items():
        monkeypatch.setattr(openml, "fetch_openml", fetch)
        with pytest.raises(ConfigError) as err:
            openml.load(6, tmp_path, 0.3, 0)
        assert message in str(err.value) and "neither cached" not in str(err.value)
    assert not [w for w in recwarn if "Invalid cache" in str(w.message)]  # folded into the one line


def test_openml_whole_number_regression_targets_are_refused_and_warnings_go_to_the_log(tmp_path, monkeypatch, caplog):
    pd = pytest.importorskip("pandas")
    bunch = openml_bunch()
    bunch.target = pd.Series(np.arange(60) % 11, name="rating")  # ratings 0..10: numeric, not nominal
    monkeypatch.setattr(openml, "fetch_openml", lambda **kwargs: bunch)
    with pytest.raises(ConfigError, match="the target 'rating' is numeric .int64., not nominal: a regression"):
        openml.load(6, tmp_path, 0.3, 0)

    def inactive(**kwargs):
        warnings.warn("Version 1 of dataset letter is inactive, meaning that issues have been found", UserWarning)
        return openml_bunch()

    monkeypatch.setattr(openml, "fetch_openml", inactive)
    with caplog.at_level("WARNING", logger="dal_runner"):
        assert openml.load(6, tmp_path, 0.3, 0).n_classes == 3
    assert "OpenML data set 6: Version 1 of dataset letter is inactive" in caplog.text


def test_pool_size_keeps_the_first_training_examples_and_the_whole_sets_normalisation():
    """dataset.pool_size=N: the pool is the first N training examples (the active-iNAS authors' SVHN
    pool is its first 50,000); the test set and the normalisation statistics stay the whole set's."""
    from omegaconf import OmegaConf

    from dal_runner.run import load_dataset

    whole = load_dataset(OmegaConf.create({"name": "digits", "test_fraction": 0.3, "pool_size": None}), 0)
    first = load_dataset(OmegaConf.create({"name": "digits", "test_fraction": 0.3, "pool_size": 100}), 0)
    assert torch.equal(first.x_train, whole.x_train[:100]) and torch.equal(first.y_train, whole.y_train[:100])
    assert torch.equal(first.x_test, whole.x_test) and (first.mean, first.std) == (whole.mean, whole.std)


def test_the_content_digest_is_the_data_sets_whatever_the_seeds_split_and_the_pool_cut(tmp_path):
    """summary.json data.content_sha256, which dal-report tells runs on different data apart by:
    one value for every seed of digits (whose split and so its fingerprint differ per seed) and
    every pool_size, another for the same file with one label changed or one value moved."""
    from omegaconf import OmegaConf

    from dal_runner.run import load_dataset

    def digest(seed, pool_size=None, **cfg):
        node = {"name": "digits", "test_fraction": 0.3, "pool_size": pool_size, **cfg}
        return load_dataset(OmegaConf.create(node), seed).content

    assert digest(0) == digest(1) == digest(0, pool_size=100) == digest(0, test_fraction=0.5)
    x, y = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32), np.arange(200) % 4
    files = []
    for name, (xs, ys) in {"same": (x, y), "label": (x, np.where(np.arange(200) == 7, (y + 1) % 4, y)),
                           "value": (np.where(np.arange(200)[:, None] == 3, x + 1e-3, x), y)}.items():
        np.savez(tmp_path / f"{name}.npz", x=xs, y=ys)
        files.append(digest(0, name="npz", path=str(tmp_path / f"{name}.npz"), layout="auto"))
    assert files[0] == digest(1, name="npz", path=str(tmp_path / "same.npz"), layout="auto")
    assert len(set(files)) == 3


def test_a_pool_size_whose_first_examples_miss_a_class_is_refused(tmp_path):
    """A file ordered by class: its first N examples would be a pool of one class, which no model can
    learn the others from; it trained to 0.175 on 5 classes without a word before."""
    from omegaconf import OmegaConf

    from dal_runner.errors import ConfigError
    from dal_runner.run import load_dataset

    y = np.repeat(np.arange(5), 40)
    x = np.random.default_rng(0).integers(0, 256, (200, 3, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "sorted.npz", x=x, y=y, x_test=x[::4], y_test=y[::4])
    cfg = {"name": "npz", "path": str(tmp_path / "sorted.npz"), "test_fraction": 0.3, "layout": "auto"}
    with pytest.raises(ConfigError) as err:
        load_dataset(OmegaConf.create({**cfg, "pool_size": 60}), 0)
    assert str(err.value) == (
        "dataset.pool_size=60: the pool is the first 60 training examples, in the data set's order, and they hold "
        "2 of the 5 classes (none of class 2, 3, 4); accepted: a pool_size whose first examples hold every class "
        "(shuffle a file ordered by class), or null (every training example)")
    assert load_dataset(OmegaConf.create({**cfg, "pool_size": 161}), 0).y_train.unique().tolist() == [0, 1, 2, 3, 4]


def test_npz_arrays_not_read_are_named_in_the_log(tmp_path, caplog):
    path = tmp_path / "extra.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 3)), y=np.arange(40) % 2, feature_names=np.array([1, 2, 3]),
             interval=np.array([0.5]))  # "val" inside a word is no split
    with caplog.at_level(logging.WARNING, logger="dal_runner"):
        npz.load(path, 0.25, seed=0)
    assert "array(s) feature_names, interval not read (dal-run reads x, y, x_test, y_test)" in caplog.text
    # a validation split beside a test split of its own: nothing is drawn from x, so only named
    np.savez(path, x=np.zeros((40, 3)), y=np.arange(40) % 2, x_test=np.zeros((10, 3)), y_test=np.arange(10) % 2,
             x_val=np.zeros((4, 3)))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dal_runner"):
        npz.load(path, 0.25, seed=0)
    assert "array(s) x_val not read" in caplog.text
