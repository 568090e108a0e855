"""An OpenML classification table by data id (scikit-learn's fetch_openml), as float32 features.

The data set is fetched once into ``root`` (scikit-learn caches it under ``root/openml``) and
read from there afterwards; scikit-learn has no offline switch, so a missing cache always
means a fetch. Rows without a label are dropped, and so are columns without a single value
in the pool part. A seeded stratified split holds out
``test_fraction``; all preprocessing is fitted on the pool part only:

    numeric columns      median imputation, then standardised (mean 0, std 1 on the pool)
    categorical columns  most-frequent imputation, then one-hot (categories unseen in the pool
                         become all zeros)
    labels               LabelEncoder: classes sorted, numbered 0..K-1

The features are standardised already, so Dataset.mean/std are 0 and 1 (Normalize is the
identity) and scale is 1.0.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from sklearn.compose import ColumnTransformer
from sklearn.datasets import fetch_openml
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

from dal_runner.data import Dataset, stratified_split
from dal_runner.data.torchvision_sets import default_root
from dal_runner.errors import ConfigError
from dal_runner.seeding import derive_seed

log = logging.getLogger("dal_runner")


def _only_folders(folder: Path) -> bool:
    """True if `folder` holds no file at any depth (what a failed fetch leaves behind)."""
    return folder.is_dir() and not any(p.is_file() for p in folder.rglob("*"))


_NETWORK = re.compile(r"network error", re.IGNORECASE)  # scikit-learn's "... Retrying": the one-line error says it
_INVALID_CACHE = re.compile(r"invalid cache", re.IGNORECASE)  # scikit-learn removed a cached file it could not read


def _damaged_cache(caught) -> bool:
    return any(_INVALID_CACHE.search(str(w.message)) for w in caught)


def _fetch_error(data_id: int, root: Path, exc: Exception, damaged: bool) -> ConfigError:
    """The one-line error for a failed fetch_openml: not reachable (with or without a damaged
    cache), no such data set, or a data set that cannot be read as a table."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())
    where = f"dataset.root={root}/openml"
    if isinstance(exc, OSError):  # the network (URLError, timeouts) or the cache's files
        accepted = (f"the id of an existing OpenML data set, fetched once where the network allows and then "
                    f"cached under {where}")
        if damaged:
            return ConfigError("dataset.id", data_id, accepted,
                               f"the cached copy of OpenML data set {data_id} under {where} could not be read "
                               f"(damaged; scikit-learn removed it) and it could not be fetched again ({detail})")
        return ConfigError("dataset.id", data_id, accepted,
                           f"OpenML data set {data_id} is neither cached under dataset.root={root} nor could be "
                           f"fetched ({detail})")
    if type(exc).__name__ == "OpenMLError":  # OpenML's own answer, e.g. no data set with this id
        return ConfigError("dataset.id", data_id, "the id of an existing OpenML data set, see openml.org/d/<id>",
                           f"OpenML answered: {detail}")
    return ConfigError("dataset.id", data_id, "the id of an OpenML data set stored as a dense table (ARFF or "
                       "parquet) with one target", f"OpenML data set {data_id} could not be read as a table ({detail})")


def load(data_id: int, root: Optional[str | os.PathLike], test_fraction: float, seed: int) -> Dataset:
    if isinstance(data_id, bool) or not isinstance(data_id, (int, np.integer)) or data_id <= 0:
        raise ConfigError("dataset.id", data_id, "a positive OpenML data id, e.g. 6 (letter) or 61 (iris)")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError("dataset.test_fraction", test_fraction, "a fraction in (0, 1), e.g. 0.3")
    data_id = int(data_id)
    root = default_root() if root is None or str(root) == "" else Path(root).expanduser()
    for folder in (root, *root.parents, root / "openml"):
        if folder.exists() and not folder.is_dir():
            raise ConfigError("dataset.root", root, "a folder (the data cache)",
                              "this is a file" if folder == root else f"{folder} is a file")
    # removed again if the fetch fails: the cache folders and every parent made for them
    created = [p for p in (root / "openml", root, *root.parents) if not p.exists()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            bunch = fetch_openml(data_id=data_id, data_home=str(root), as_frame=True, parser="auto")
        except (OSError, ValueError, KeyError) as exc:  # URLError is an OSError; OpenMLError a ValueError
            for folder in created:  # deepest first
                if _only_folders(folder):
                    shutil.rmtree(folder, ignore_errors=True)
            raise _fetch_error(data_id, root, exc, _damaged_cache(caught)) from None
    for warning in caught:  # e.g. "Version 1 of dataset ... is inactive": into the run's log, not raw on stderr
        if not _NETWORK.search(str(warning.message)):
            log.warning("OpenML data set %d: %s", data_id, " ".join(str(warning.message).split()))

    def bad(reason: str) -> ConfigError:
        return ConfigError("dataset.id", data_id, "the id of an OpenML classification data set with one target", reason)

    features, target = bunch.data, bunch.target
    if target is None:
        raise bad("the data set has no default target column")
    if getattr(target, "ndim", 1) == 2:
        if target.shape[1] != 1:
            raise bad(f"the data set has {target.shape[1]} target columns")
        target = target.iloc[:, 0]
    labelled = target.notna().to_numpy()
    features, target = features[labelled], target[labelled]
    labels = _encode_labels(target, bad)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if n_classes < 2:
        raise bad(f"the target has {n_classes} class(es); at least 2 are needed")

    train_idx, test_idx = stratified_split(
        labels, test_fraction, derive_seed(seed, "dataset", "openml", data_id, "split"), f"OpenML data set {data_id}",
        "a fraction that leaves every class in both parts")
    train_idx.sort()
    test_idx.sort()

    table = _typed_frame(features)
    table = table.loc[:, table.iloc[train_idx].notna().any().to_numpy()]  # nothing to impute from
    numeric = [c for c in table.columns if table[c].dtype == np.float64]
    categorical = [c for c in table.columns if c not in numeric]
    if table.shape[1] == 0:
        raise bad("no feature column has a value in the pool part")
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                          OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
             categorical),
        ],
        sparse_threshold=0.0,
    )
    x_train = preprocess.fit_transform(table.iloc[train_idx]).astype(np.float32)
    x_test = preprocess.transform(table.iloc[test_idx]).astype(np.float32)
    n_features = x_train.shape[1]
    return Dataset(
        name=f"openml-{data_id}",
        x_train=torch.from_numpy(np.ascontiguousarray(x_train)),
        y_train=torch.from_numpy(labels[train_idx]),
        x_test=torch.from_numpy(np.ascontiguousarray(x_test)),
        y_test=torch.from_numpy(labels[test_idx]),
        n_classes=n_classes,
        scale=1.0,
        mean=(0.0,) * n_features,
        std=(1.0,) * n_features,
    )


def _encode_labels(target, bad) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(target.dtype) and not pd.api.types.is_bool_dtype(target.dtype):
        # OpenML marks a classification target as nominal (a category here); a numeric one is a
        # regression target, even where it holds whole numbers (counts, ratings)
        raise bad(f"the target {getattr(target, 'name', '')!r} is numeric ({target.dtype}), not nominal: "
                  f"a regression data set, not classification")
    values = target.to_numpy()
    if values.dtype == object:  # categories of mixed Python types do not sort; their text does
        values = values.astype(str)
    return LabelEncoder().fit_transform(values).astype(np.int64)


def _typed_frame(features):
    """Numeric columns as float64 with NaN; every other column as text with NaN for missing.

    Bool columns count as categorical. One uniform type per kind keeps SimpleImputer and
    OneHotEncoder away from pandas' nullable types (pd.NA) and mixed-type object columns.
    """
    import pandas as pd

    columns = {}
    for name in features.columns:
        column = features[name]
        dtype = column.dtype
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            columns[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            missing = column.isna().to_numpy()
            text = column.astype(object).astype(str).to_numpy(dtype=object)
            text[missing] = np.nan
            columns[name] = text
    return pd.DataFrame(columns, index=features.index)
