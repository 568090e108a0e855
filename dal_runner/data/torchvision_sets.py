"""CIFAR-10, CIFAR-100, SVHN, MNIST and Fashion-MNIST from torchvision's files, as uint8 tensors.

The files live under ``root`` in the layout torchvision's ``download=True`` writes:

    cifar10        cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch
    cifar100       cifar-100-python/train, test
    svhn           SVHN/train_32x32.mat, test_32x32.mat (+ extra_32x32.mat)
    mnist          MNIST/raw/{train,t10k}-images-idx3-ubyte, {train,t10k}-labels-idx1-ubyte
    fashion_mnist  FashionMNIST/raw/ (same four names); the .gz versions are read as well

(torchvision reads SVHN's .mat files straight from the root it is given; we give it
``root/SVHN`` so that one cache folder holds every data set apart, and read the files straight
from ``root`` where they lie there and root/SVHN does not hold them.)

Fetching is torchvision's own code (mirrors, md5 of what it downloads), run only when
``download`` is true and a file is missing. Reading is done here, straight from the arrays in
the files: torchvision's CIFAR and SVHN constructors re-hash every file against the official
md5 on each load (1.3 GB for SVHN extra) and go through per-image PIL objects for training;
instead we check the structure of each file (shapes, dtypes, label ranges, byte counts), so a
truncated or damaged file fails with its path named.

Mean and std are computed per channel from the loaded pool (train split, plus SVHN extra when
included), not taken from published constants, so that they always match the data in use
(dataset.pool_size then cuts the pool from it, and the statistics stay the whole split's).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torchvision.datasets as tvd

from dal_runner.data import Dataset
from dal_runner.errors import ConfigError, check_choice

NAMES = ("cifar10", "cifar100", "svhn", "mnist", "fashion_mnist")

_CIFAR = {  # name -> (torchvision class, label key in the pickled batches, number of classes)
    "cifar10": (tvd.CIFAR10, "labels", 10),
    "cifar100": (tvd.CIFAR100, "fine_labels", 100),
    "cifar100 coarse": (tvd.CIFAR100, "coarse_labels", 20),  # dataset.labels=coarse: the 20 superclasses
}
_MNIST = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST}
_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes, the third byte of the magic number

Arrays = Tuple[np.ndarray, np.ndarray]  # images N x C x H x W uint8, labels N int64


def default_root() -> Path:
    """The data cache: $DAL_DATA_ROOT if set, else ~/.cache/dal-runner (same rule as the config)."""
    env = os.environ.get("DAL_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dal-runner"


CIFAR100_LABELS = ("fine", "coarse")


def load(name: str, root: Optional[str | os.PathLike] = None, download: bool = False,
         include_extra: bool = False, labels: str = "fine") -> Dataset:
    """The standard train split as the pool (+ SVHN extra if asked) and the standard test split.
    `labels`: CIFAR-100's fine (100) or coarse (20 superclasses) labels."""
    check_choice("dataset.labels", labels, CIFAR100_LABELS if name == "cifar100" else ("fine",))
    kind = f"{name} coarse" if labels == "coarse" else name
    root = _checked_root(name, root, include_extra)
    expected = expected_files(name, root, include_extra)
    if download and _missing(expected):
        _download(name, root, include_extra)
    check_files(name, root, include_extra)

    try:
        if name in _CIFAR:
            (x_train, y_train), (x_test, y_test) = _read_cifar(kind, root)
        elif name == "svhn":
            (x_train, y_train), (x_test, y_test) = _read_svhn(root, include_extra)
        else:
            (x_train, y_train), (x_test, y_test) = _read_mnist(name, root)
    except _BadFile as bad:
        raise bad.error(root) from None
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ConfigError("dataset.root", root, f"the official {name} files",
                          f"train images are {x_train.shape[1:]} but test images {x_test.shape[1:]}")

    x_train_t = torch.from_numpy(x_train)
    mean, std = channel_mean_std(x_train_t, 255.0)
    return Dataset(
        name=name,
        x_train=x_train_t,
        y_train=torch.from_numpy(y_train),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y_test),
        n_classes=_n_classes(kind),
        scale=255.0,
        mean=mean,
        std=std,
    )


def _checked_root(name: str, root: Optional[str | os.PathLike], include_extra: bool) -> Path:
    check_choice("dataset.name", name, NAMES)
    if include_extra and name != "svhn":
        raise ConfigError("dataset.extra", include_extra, "false", f"only svhn has an extra split, not {name}")
    root = default_root() if root is None or str(root) == "" else Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError("dataset.root", root, "a folder (the data cache)", "this is a file")
    return root


def check_files(name: str, root: Optional[str | os.PathLike] = None, include_extra: bool = False,
                read: bool = False) -> None:
    """Every file a load reads is there: else the one-line error on dataset.root. `read` (what
    `dal-run -m` checks before a sweep's jobs start, once per data set): each file of at most
    READ_AT_MOST bytes is also read as a load reads it, one at a time, so that a truncated or
    corrupt file stops the sweep before its jobs all fail alike (SVHN's 1.3 GB extra is left to the jobs)."""
    root = _checked_root(name, root, include_extra)
    expected = expected_files(name, root, include_extra)
    missing = _missing(expected)
    if missing:
        what = (f"no {name} files there" if len(missing) == len(expected) else
                f"{name} files missing: {', '.join(_relative(p, root) for p in missing)}")
        raise ConfigError(
            "dataset.root", root,
            f"a folder holding {', '.join(_relative(p, root) for p in expected)} (the layout of torchvision's "
            f"downloads{'; or the .mat files straight in dataset.root' if name == 'svhn' else ''})",
            f"{what}{_misplaced(name, root, missing, include_extra)}; copy them there, or set dataset.download=true where the "
            f"network allows",
        )
    for path in expected if read else []:
        path = _existing(path)
        if path.stat().st_size > READ_AT_MOST:
            continue
        try:
            if name in _CIFAR:
                _read_cifar_batch(path, _CIFAR[name][1], _CIFAR[name][2])
            elif name == "svhn":
                _read_svhn_file(path)
            else:
                _read_idx(path, 3 if "-images-" in path.name else 1)
        except _BadFile as bad:
            raise bad.error(root) from None


READ_AT_MOST = 512 * 2**20


def _misplaced(name: str, root: Path, missing: List[Path], include_extra: bool = False) -> str:
    """Where the missing files are instead, if that is plain: gzipped (read unzipped, except MNIST's
    raw files), or under the folder above (dataset.root set to the data set's own folder)."""
    gzipped = [p for p in missing if p.with_name(p.name + ".gz").is_file()]
    if gzipped:
        return f" ({', '.join(_relative(p, root) + '.gz' for p in gzipped)} found: decompress them)"
    for up, words in ((root.parent, "the folder above it"), (root.parent.parent, "two folders above it")):
        # dataset.root set to the data set's own folder (or MNIST/raw)
        if up != root and len(missing) == len(expected_files(name, root, include_extra)) and not _missing(
                expected_files(name, up, include_extra)):
            return f" (they are under {words}: dataset.root={up})"
    if name in _CIFAR and (root / _CIFAR[name][0].filename).is_file():
        return f" ({_CIFAR[name][0].filename} found: extract it there, tar -xzf {root / _CIFAR[name][0].filename} -C {root})"
    moved, renamed = [], []
    for path in missing:  # in a folder near the one it belongs in, or under another common name
        for folder in [f for f in (path.parent, path.parent.parent, root) if f == root or root in f.parents]:
            for other in (path.name, path.name.replace("-idx", ".idx")):  # train-images.idx3-ubyte: many unzip tools'
                hits = [folder / (other + gz) for gz in ("", ".gz") if (folder / (other + gz)).is_file()]
                if folder / other != path and hits:
                    (moved if other == path.name else renamed).append((hits[0], path))
    if moved:
        (hit, path), more = moved[0], len(moved) - 1
        return (f" ({hit.relative_to(root)} found{f' with {more} more' if more else ''}: "
                f"move {'them' if more else 'it'} into {path.parent.relative_to(root)}/)")
    if renamed:
        (hit, path), more = renamed[0], len(renamed) - 1
        return (f" ({hit.relative_to(root)} found{f' with {more} more' if more else ''}, named with .idx where "
                f"torchvision's names have -idx: rename {'them' if more else 'it'}, e.g. to {path.name})")
    return ""


def expected_files(name: str, root: Path, include_extra: bool = False) -> List[Path]:
    """The files a load reads. For MNIST-like sets a path may also exist as path + '.gz'."""
    if name in _CIFAR:
        cls = _CIFAR[name][0]
        return [root / cls.base_folder / f for f, _md5 in cls.train_list + cls.test_list]
    if name == "svhn":
        splits = ["train", "test"] + (["extra"] if include_extra else [])
        return [_svhn_root(root) / tvd.SVHN.split_list[s][1] for s in splits]
    raw = _mnist_raw(name, root)
    return [raw / f"{prefix}-{kind}" for prefix in ("train", "t10k")
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]


def channel_mean_std(images: torch.Tensor, scale: float,
                     chunk: int = 2048) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-channel mean and std of images / scale over N, H and W (population std).

    uint8 images: exact, from a 256-bin histogram per channel (no float copy of the pool).
    Other dtypes: float64 sums over chunks of images, so the pool never exists as float64
    all at once. A constant channel gets std 1.0, so that Normalize never divides by 0.
    """
    channels = images.shape[1]
    if images.dtype == torch.uint8:
        levels = torch.arange(256, dtype=torch.float64)
        counts = torch.zeros(channels, 256, dtype=torch.int64)
        for part in images.split(chunk):  # bincount works on int64 copies: a chunk at a time
            for c in range(channels):
                counts[c] += torch.bincount(part[:, c].reshape(-1), minlength=256)
        counts = counts.to(torch.float64)
        count = counts.sum(dim=1)
        mean = (counts * levels).sum(dim=1) / count
        var = (counts * (levels - mean[:, None]).square()).sum(dim=1) / count
    else:
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        for part in images.split(chunk):
            values = part.reshape(part.shape[0], channels, -1).to(torch.float64)
            total += values.sum(dim=(0, 2))
            total_sq += values.square().sum(dim=(0, 2))
        count = images.numel() / channels
        mean = total / count
        var = (total_sq / count - mean.square()).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.full_like(std, float(scale)))
    return tuple((mean / scale).tolist()), tuple((std / scale).tolist())


# ---------------------------------------------------------------- layout and download
def _n_classes(name: str) -> int:
    return _CIFAR[name][2] if name in _CIFAR else 10


def _svhn_root(root: Path) -> Path:
    """root/SVHN (dal-run's download), or root itself where SVHN's files lie straight in it, as
    torchvision.datasets.SVHN(root) writes them, and root/SVHN lacks them (an empty SVHN/ beside
    them hid them before)."""
    train = tvd.SVHN.split_list["train"][1]
    if not (root / "SVHN" / train).is_file() and (root / train).is_file():
        return root
    return root / "SVHN"


def _mnist_raw(name: str, root: Path) -> Path:
    return root / _MNIST[name].__name__ / "raw"  # torchvision's MNIST.raw_folder


def _exists(path: Path) -> bool:
    """The file, or for MNIST-like sets (their raw/ folder) the file gzipped, which they read as is."""
    return path.is_file() or (path.parent.name == "raw" and path.with_name(path.name + ".gz").is_file())


def _missing(expected: List[Path]) -> List[Path]:
    return [p for p in expected if not _exists(p)]


def _relative(path: Path, root: Path) -> str:
    text = str(path.relative_to(root))
    return text + "[.gz]" if path.parent.name == "raw" else text


def _download(name: str, root: Path, include_extra: bool) -> None:
    """torchvision's download=True path; its constructors also parse, which we then redo once.
    A failed or interrupted download leaves nothing behind: the files it wrote (a partial one
    would pass for present next time) and the folders it made are removed."""
    made = [p for p in (root, *root.parents) if not p.exists()]  # folders mkdir will make, deepest first
    before = _paths_under(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name in _CIFAR:
            _CIFAR[name][0](str(root), train=True, download=True)  # one archive holds every batch
        elif name == "svhn":
            for split in ["train", "test"] + (["extra"] if include_extra else []):
                if not (_svhn_root(root) / tvd.SVHN.split_list[split][1]).is_file():  # one file per split
                    tvd.SVHN(str(_svhn_root(root)), split=split, download=True)
        else:
            _MNIST[name](str(root), train=True, download=True)  # fetches all four files
    except BaseException as exc:  # network, archive or checksum failure: all mean "not downloaded"
        _remove_new(root, before, made)
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: cleaned up, then on their way
            raise
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(
            "dataset.download", "true",
            f"true only where the network reaches the {name} servers; otherwise false, "
            f"with the files copied under dataset.root={root}",
            f"downloading {name} into {root} failed ({detail})",
        ) from None


def _paths_under(root: Path) -> set:
    return set(root.rglob("*")) if root.is_dir() else set()


def _remove_new(root: Path, before: set, made: List[Path]) -> None:
    """Remove what appeared under root since `before` (files, and folders once empty, deepest
    first), then the folders in `made` (root and the parents mkdir made for it) once empty."""
    new = sorted(_paths_under(root) - before, key=lambda p: len(p.parts), reverse=True)
    for path in new + made:
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:  # a folder that still holds an older file stays
            pass


class _BadFile(Exception):
    """A file that exists but does not hold what the format says; load() names it to the user."""

    def __init__(self, path: Path, detail: str):
        super().__init__(f"{path}: {detail}")
        self.path, self.detail = path, " ".join(detail.split())

    def error(self, root: Path) -> ConfigError:
        return ConfigError("dataset.root", root, "the files of the official release; delete this one, then copy it "
                           "again or re-run with dataset.download=true where the network allows",
                           f"{self.path} is truncated, corrupt or not the official release's file ({self.detail})")


# ---------------------------------------------------------------- CIFAR: pickled dicts
def _read_cifar(name: str, root: Path) -> Tuple[Arrays, Arrays]:
    cls, label_key, n_classes = _CIFAR[name]
    folder = root / cls.base_folder

    def read(files) -> Arrays:
        parts = [_read_cifar_batch(folder / f, label_key, n_classes) for f, _md5 in files]
        images = np.concatenate([p[0] for p in parts])
        # rows hold the red plane, then green, then blue, each row-major: already C x H x W
        return images.reshape(-1, 3, 32, 32), np.concatenate([p[1] for p in parts])

    return read(cls.train_list), read(cls.test_list)


def _read_cifar_batch(path: Path, label_key: str, n_classes: int) -> Arrays:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # a damaged pickle can raise almost anything; all mean "bad file"
        raise _BadFile(path, f"{type(exc).__name__}: {exc}") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise _BadFile(path, f"expected a pickled dict with keys 'data' and '{label_key}'")
    images = entry["data"]
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 \
            or images.shape[1] != 3 * 32 * 32:
        shape = getattr(images, "shape", type(images).__name__)
        raise _BadFile(path, f"'data' should be a uint8 array of N x 3072, got {shape}")
    labels = _labels(path, entry[label_key], len(images), n_classes)
    return images, labels


# ---------------------------------------------------------------- SVHN: MATLAB files
def _read_svhn(root: Path, include_extra: bool) -> Tuple[Arrays, Arrays]:
    folder = _svhn_root(root)
    name = {s: tvd.SVHN.split_list[s][1] for s in ("train", "test", "extra")}
    pool = [_read_svhn_file(folder / name["train"])]
    if include_extra:
        pool.append(_read_svhn_file(folder / name["extra"]))
    test = _read_svhn_file(folder / name["test"])
    # X is H x W x C x N: one copy of each file into a C-contiguous N x C x H x W (concatenate
    # would keep the transposed views' memory order, a pool whose rows are not contiguous)
    x_train = np.empty((sum(x.shape[3] for x, _ in pool), 3, 32, 32), dtype=np.uint8)
    start = 0
    for x, _ in pool:
        x_train[start:start + x.shape[3]] = x.transpose(3, 2, 0, 1)
        start += x.shape[3]
    y_train = np.concatenate([y for _, y in pool])
    return (x_train, y_train), (np.ascontiguousarray(test[0].transpose(3, 2, 0, 1)), test[1])


def _read_svhn_file(path: Path) -> Arrays:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except Exception as exc:  # scipy raises ValueError, OSError, zlib errors, ... for bad files
        raise _BadFile(path, f"{type(exc).__name__}: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise _BadFile(path, "expected MATLAB variables X and y")
    images = mat["X"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise _BadFile(path, f"X should be uint8 32 x 32 x 3 x N, got {images.dtype} {images.shape}")
    labels = np.asarray(mat["y"]).reshape(-1)
    n = images.shape[3]
    if labels.shape[0] != n:
        raise _BadFile(path, f"{n} images but {labels.shape[0]} labels")
    if n and (labels.min() < 1 or labels.max() > 10 or not np.all(labels == np.round(labels))):
        raise _BadFile(path, "labels should be 1..10 (10 stands for the digit 0)")
    labels = labels.astype(np.int64) % 10  # SVHN's label 10 is the digit 0
    return images, labels


# ---------------------------------------------------------------- MNIST-like: IDX files
def _read_mnist(name: str, root: Path) -> Tuple[Arrays, Arrays]:
    raw = _mnist_raw(name, root)

    def read(prefix: str) -> Arrays:
        image_path = raw / f"{prefix}-images-idx3-ubyte"
        label_path = raw / f"{prefix}-labels-idx1-ubyte"
        images = _read_idx(image_path, 3)
        labels = _labels(_existing(label_path), _read_idx(label_path, 1), len(images), 10)
        return images[:, None], labels  # add the channel axis

    return read("train"), read("t10k")


def _existing(path: Path) -> Path:
    return path if path.is_file() else path.with_name(path.name + ".gz")


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes: magic 0x00 0x00 0x08 ndim, ndim big-endian uint32 sizes, data."""
    path = _existing(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise _BadFile(path, f"{type(exc).__name__}: {exc}") from None
    if len(data) < 4 or data[:3] != bytes([0, 0, _IDX_UBYTE]) or data[3] != ndim:
        raise _BadFile(path, f"not an IDX file of {ndim}-d unsigned bytes "
                             f"(magic number should be 0x0000080{ndim}, got 0x{data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _BadFile(path, "the header is cut short")
    sizes = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(sizes))
    if len(data) - header != expected:
        raise _BadFile(path, f"the header announces {sizes} = {expected} bytes of data "
                             f"but {len(data) - header} follow")
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(sizes)


# ---------------------------------------------------------------- labels, shared by all
def _labels(path: Path, values, n: int, n_classes: int) -> np.ndarray:
    try:
        given = np.asarray(values).reshape(-1)
        labels = given.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise _BadFile(path, f"labels are not integers ({exc})") from None
    if given.dtype.kind == "f" and not np.array_equal(labels, given):  # 0.5 is not truncated to 0
        raise _BadFile(path, f"labels are not whole numbers (e.g. {float(given[labels != given][0])})")
    if labels.shape[0] != n:
        raise _BadFile(path, f"{n} images but {labels.shape[0]} labels")
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise _BadFile(path, f"labels should lie in 0..{n_classes - 1}, "
                             f"found {labels.min()}..{labels.max()}")
    return labels

