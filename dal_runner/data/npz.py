"""The user's own arrays, from one .npz file (numpy.savez): x, y and optionally x_test, y_test.

Shapes of x (x_test has the same shape after the first axis):

    N x D            a table: float32, with per-feature mean/std of the pool in Dataset.mean/std
    N x H x W        grey images: a channel axis is added (N x 1 x H x W)
    N x C x H x W    images, channels first
    N x H x W x C    images, channels last

Which of the two a 4-D x is, is `layout` (dataset.layout): channels_first, channels_last, or
auto (the default): the two equal axes are the image's sides (32 x 32 x 3 and 16 x 16 x 200 are
channels last, 3 x 32 x 32 and 200 x 16 x 16 channels first); for images that are not square
the channel axis is the last if it is shorter than both others (32 x 64 x 3), else the second;
all equal (8 x 8 x 8): channels first. The run's log names the layout it read.

Image values: uint8 stays uint8 with scale 255; integer or boolean arrays whose values all lie
in 0..255 become uint8 too (scale 255); any other numeric array becomes float32 with scale 1.0,
its values used as given (so [0, 1] floats map to [0, 1]). Mean and std per channel come from
the pool either way. x and x_test must be of the same kind (both integer or both float).

Labels y (and y_test): integers 0..K-1 where every class 0..K-1 occurs in y; they are not
remapped, so that class k means the same in every run and every report. Floats holding whole
numbers are accepted. Without x_test, a seeded stratified split holds out test_fraction of x.
"""

from __future__ import annotations

import logging
import os
import re
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch

from dal_runner.data import Dataset, stratified_split
from dal_runner.data.torchvision_sets import channel_mean_std
from dal_runner.errors import ConfigError
from dal_runner.seeding import derive_seed

log = logging.getLogger("dal_runner")
KEY = "dataset.path"
FORMAT = ("an .npz file (numpy.savez) with arrays x (N x D, N x H x W, N x C x H x W or N x H x W x C: "
          "dataset.layout) "
          "and y (N integer labels 0..K-1), optionally x_test and y_test")


LAYOUTS = ("auto", "channels_first", "channels_last")
READ = ("x", "y", "x_test", "y_test")


def _check_extra(path, extra, own_test: bool) -> None:
    """Arrays dal-run does not read: one named like a split (xtest, X_test, x_val) is refused where
    the file has no x_test, as the test split would be drawn from x without a word; any other is
    named in the log."""
    splits = [] if own_test else [k for k in extra if re.fullmatch(r"[xy](test|val|valid|validation|train)|(test|val|valid|validation|train)"
                                               r"[xy]", re.sub(r"[^a-z]", "", k.lower()))]
    if splits:
        raise ConfigError(KEY, path, FORMAT, f"array(s) {', '.join(splits)} would not be read: dal-run reads x, y "
                                             f"and, for a test split of your own, x_test and y_test (without them "
                                             f"it draws one from x by dataset.test_fraction); rename or remove them")
    if extra:
        log.warning("%s: array(s) %s not read (dal-run reads x, y, x_test, y_test)", path, ", ".join(extra))


def load(path: str | os.PathLike, test_fraction: float, seed: int, layout: str = "auto") -> Dataset:
    if layout not in LAYOUTS:
        raise ConfigError("dataset.layout", layout, f"one of {', '.join(LAYOUTS)}")
    file = Path(str(path)).expanduser()
    arrays = _read(file, path)

    def bad(reason: str, accepted: str = FORMAT) -> ConfigError:
        return ConfigError(KEY, path, accepted, reason)

    x, y = arrays["x"], arrays["y"]
    has_test = "x_test" in arrays or "y_test" in arrays
    if has_test and not ("x_test" in arrays and "y_test" in arrays):
        given = "x_test" if "x_test" in arrays else "y_test"
        raise bad(f"{given} is given without its partner; give both x_test and y_test, or neither")
    for name, array in arrays.items():
        _check_numeric(name, array, bad)
    if x.ndim not in (2, 3, 4):
        raise bad(f"x has {x.ndim} dimensions {x.shape}")
    if len(x) == 0 or 0 in x.shape[1:]:
        raise bad(f"x is empty, shape {x.shape}")
    y = _labels("y", y, len(x), bad)
    del arrays["x"]  # from here `x` alone holds the pool, so that each copy below frees the one before
    n_classes = int(y.max()) + 1
    present = np.unique(y)
    if n_classes < 2 or len(present) != n_classes or y.min() < 0:
        # the first absent classes; at most len(present) of len(present) + 10 candidates are present
        # (a label of 10**12 must not make a list of 10**12 classes)
        candidates = np.arange(min(n_classes, len(present) + 10)) if n_classes > 0 else np.arange(0)
        absent = np.setdiff1d(candidates, present)[:10].tolist()
        raise bad(f"labels must be contiguous 0..K-1 with every class in y, K >= 2; "
                  f"y has {present.min()}..{present.max()}" + (f", class(es) {absent} absent" if absent else ""),
                  "labels 0..K-1 (remap them yourself, e.g. with numpy.unique(y, return_inverse=True))")

    if has_test:
        log.info("%s: x_test and y_test are the test set (dataset.test_fraction is not used)", file.name)
        x_test = arrays.pop("x_test")
        if x_test.shape[1:] != x.shape[1:]:
            raise bad(f"x_test is {x_test.shape} but x is {x.shape}; they must agree after the first axis")
        if len(x_test) == 0:
            raise bad("x_test holds no examples")
        if _is_float(x) != _is_float(x_test):
            raise bad(f"x is {x.dtype} but x_test is {x_test.dtype}; give both as integers or both as floats")
        y_test = _labels("y_test", arrays["y_test"], len(x_test), bad)
    # the final layout and type before the split, one array at a time: a copy of the file's pool
    # is made only where the layout or the type changes (uint8 N x C x H x W images need none)
    as_bytes = x.ndim > 2 and _fits_in_byte(x) and (not has_test or _fits_in_byte(x_test))
    dtype, scale = (np.uint8, 255.0) if as_bytes else (np.float32, 1.0)
    last = channels_last(x.shape, layout)
    if x.ndim == 4:
        log.info("%s: x %s read as %s", file.name, " x ".join(map(str, x.shape)),
                 "channels last (N x H x W x C)" if last else "channels first (N x C x H x W)")
        if layout != "auto" and last != channels_last(x.shape) and len(set(x.shape[1:])) > 1:  # all equal: no telling
            # the layout given against what the shape suggests (e.g. 16 channels of 16 x 3 images)
            c, h, w = (x.shape[3], x.shape[1], x.shape[2]) if last else x.shape[1:]
            log.warning("%s: dataset.layout=%s reads x as %d channel(s) of %d x %d images; the shape suggests "
                        "%s (dataset.layout=auto)", file.name, layout, c, h, w,
                        "channels last" if channels_last(x.shape) else "channels first")
    x = _final(x, dtype, last)
    if has_test:
        x_test = _final(x_test, dtype, last)
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError("dataset.test_fraction", test_fraction, "a fraction in (0, 1), e.g. 0.3")
        train_idx, test_idx = stratified_split(
            y, test_fraction, derive_seed(seed, "dataset", "npz", "split"), str(path),
            "a fraction that leaves every class in both parts, or x_test/y_test in the file")
        train_idx.sort()
        test_idx.sort()
        x, x_test, y, y_test = x[train_idx], x[test_idx], y[train_idx], y[test_idx]

    if y_test.min() < 0 or y_test.max() >= n_classes:
        raise bad(f"y_test has labels {y_test.min()}..{y_test.max()} outside y's classes 0..{n_classes - 1}")

    x_train_t, x_test_t = torch.from_numpy(x), torch.from_numpy(x_test)
    if x.ndim == 2:
        mean, std = _feature_mean_std(x_train_t)
    else:
        mean, std = channel_mean_std(x_train_t, scale)
    return Dataset(
        name=f"npz-{file.stem}",
        x_train=x_train_t,
        y_train=torch.from_numpy(y),
        x_test=x_test_t,
        y_test=torch.from_numpy(y_test),
        n_classes=n_classes,
        scale=scale,
        mean=mean,
        std=std,
    )


def check_file(path: str | os.PathLike) -> Path:
    """The file is there (nothing read): else the one-line error on dataset.path."""
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(KEY, path, FORMAT, "file not found" if not file.exists() else "not a file")
    return file


def _read(file: Path, path) -> Dict[str, np.ndarray]:
    check_file(path)
    with open(file, "rb") as handle:  # our handle, so that a failed np.load leaks nothing
        head = handle.read(6)
        handle.seek(0)
        if not head.startswith((b"PK", b"\x93NUMPY")):  # neither a zip (.npz) nor an .npy: numpy would try pickle
            raise ConfigError(KEY, path, FORMAT, f"not an .npz file (it begins {head!r}; numpy.savez writes a zip "
                                                 f"archive, which begins b'PK')")
        try:
            archive = np.load(handle, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ConfigError(KEY, path, FORMAT, f"not an .npz file ({type(exc).__name__}: {exc})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ConfigError(KEY, path, FORMAT, "a single .npy array, not an .npz archive of named arrays")
        with archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise ConfigError(KEY, path, FORMAT, f"missing array(s) {', '.join(missing)}; "
                                                     f"the file has {', '.join(archive.files) or 'none'}")
            _check_extra(path, [k for k in archive.files if k not in READ], "x_test" in archive.files)
            arrays = {}
            for name in READ:
                if name not in archive.files:
                    continue
                try:
                    arrays[name] = archive[name]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, SyntaxError,
                        tokenize.TokenError, MemoryError) as exc:
                    # object arrays (they need pickle) and damaged members both land here; a damaged
                    # header can fail numpy's literal parsing, or claim a shape no memory holds
                    raise ConfigError(KEY, path, FORMAT,
                                      f"array {name} cannot be read ({type(exc).__name__}: {exc})") from None
    return arrays


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f"


def _check_numeric(name: str, array: np.ndarray, bad) -> None:
    if array.dtype.kind not in "biuf":
        raise bad(f"array {name} has dtype {array.dtype}; numbers are needed")
    if _is_float(array):
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if n_bad:
            raise bad(f"array {name} holds {n_bad} NaN or infinite value(s)")
        # x is used as float32: a finite float64 beyond its range would become inf there
        limit = float(np.finfo(np.float32).max)
        if array.dtype.itemsize > 4:  # comparisons, not np.abs: no float64 copy of a large array
            n_big = int(np.count_nonzero(array > limit)) + int(np.count_nonzero(array < -limit))
            if n_big:
                largest = max(float(array.max()), -float(array.min()))
                raise bad(f"array {name} holds {n_big} value(s) beyond float32's range (|v| > {limit:.3g}), "
                          f"the largest {largest:.3g}; scale them first")


def _labels(name: str, labels: np.ndarray, n: int, bad) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise bad(f"{name} must be one label per example, got shape {labels.shape}")
    if labels.shape[0] != n:
        x_name = "x" if name == "y" else "x_test"
        raise bad(f"{x_name} has {n} examples but {name} has {labels.shape[0]} labels")
    if labels.dtype.kind == "b" or (_is_float(labels) and not np.all(labels == np.round(labels))):
        raise bad(f"{name} must hold integer class labels, got {labels.dtype} values such as {labels[:3].tolist()}")
    return labels.astype(np.int64)


def _feature_mean_std(x: torch.Tensor, rows: int = 65536) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    """Per-feature mean and std (1/N) in float64, two passes over blocks of rows (no float64 copy)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for block in x.split(rows):
        total += block.to(torch.float64).sum(dim=0)
    mean = total / x.shape[0]
    squares = torch.zeros_like(mean)
    for block in x.split(rows):
        squares += (block.to(torch.float64) - mean).square().sum(dim=0)
    std = (squares / x.shape[0]).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature is left as is
    return tuple(mean.tolist()), tuple(std.tolist())


def channels_last(shape: Tuple[int, ...], layout: str = "auto") -> bool:
    """Whether x of this shape holds channels last (`layout`: the module docstring's rule)."""
    if len(shape) != 4 or layout == "channels_first":
        return False
    if layout == "channels_last":
        return True
    _, a, b, c = shape
    if a == b != c:  # square images first: N x H x W x C
        return True
    if b == c != a:  # square images last: N x C x H x W
        return False
    return c < min(a, b)  # images that are not square: the channel axis is the shortest


def _final(x: np.ndarray, dtype, last: bool) -> np.ndarray:
    """x as the Dataset holds it: C-contiguous, of `dtype`, images channels first (grey images
    with a channel axis). A view where nothing changes; else one copy."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and last:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=dtype)


def _fits_in_byte(images: np.ndarray) -> bool:
    if images.dtype == np.uint8 or images.dtype.kind == "b":
        return True
    return images.dtype.kind in "iu" and int(images.min()) >= 0 and int(images.max()) <= 255


