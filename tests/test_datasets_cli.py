"""dal-run end to end on every data source, read from small files in the real on-disk formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, run_dirs
from test_datasets import openml_bunch, write_cifar, write_mnist, write_svhn

TINY = ["budget.initial=6", "budget.batch=6", "budget.max_labels=18", "trainer.epochs=2", "trainer.batch_size=8"]


def _write(kind: str, root):
    if kind in ("cifar10", "cifar100"):
        write_cifar(root, kind)
    elif kind == "svhn":
        write_svhn(root)
    elif kind == "mnist":
        write_mnist(root, "MNIST", gz=True)
    elif kind == "fashion_mnist":
        write_mnist(root, "FashionMNIST", gz=False)


@pytest.mark.parametrize("dataset,arch", [
    ("cifar10", "search=fixed arch=mlp"), ("cifar100", "search=fixed arch=resnet_small arch.width=8"),
    ("svhn", "search=fixed arch=mlp"), ("mnist", "search=inas arch=resnet arch.width=8 search.epochs=1"),
    ("fashion_mnist", "search=fixed arch=resnet18 arch.width=4"),
])
def test_dal_run_on_torchvision_files(tmp_path, dataset, arch):
    root = tmp_path / "data"
    _write(dataset, root)
    res = run_cli([f"dataset={dataset}", f"dataset.root={root}", *arch.split(), *TINY], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = run_dirs(tmp_path / "outputs" / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_n_labeled"] == 18 and summary["choices"]["dataset"] == dataset


def test_dal_run_on_user_npz_images_and_a_corrupt_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x=rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
             y=np.arange(40) % 4)
    res = run_cli(["dataset=npz", f"dataset.path={tmp_path / 'mine.npz'}", "search=fixed", "arch=cnn", *TINY],
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (tmp_path / "broken.npz").write_bytes((tmp_path / "mine.npz").read_bytes()[:300])
    res = run_cli(["dataset=npz", f"dataset.path={tmp_path / 'broken.npz'}", *TINY], cwd=tmp_path)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1 and "broken.npz" in err[0] and "Traceback" not in res.stderr


def test_missing_cifar_files_name_the_expected_files(tmp_path):
    res = run_cli(["dataset=cifar10", f"dataset.root={tmp_path / 'empty'}"], cwd=tmp_path)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1
    assert "cifar-10-batches-py/data_batch_1" in err[0] and "dataset.download=true" in err[0]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.csv"))


def test_openml_table_runs_the_loop_with_the_mlp(tmp_path, monkeypatch, small_run):
    from dal_runner.data import openml

    monkeypatch.setattr(openml, "fetch_openml", lambda **kw: openml_bunch(90))
    summary, folder = small_run("dataset=openml", f"dataset.root={tmp_path}", "budget.initial=9",
                                "budget.batch=9", "budget.max_labels=27")
    assert summary["final_n_labeled"] == 27


def test_cifar100_runs_on_its_coarse_labels_and_refuses_an_unknown_label_set(tmp_path):
    root = tmp_path / "data"
    write_cifar(root, "cifar100")
    res = run_cli(["dataset=cifar100", f"dataset.root={root}", "dataset.labels=coarse", "search=fixed", "arch=mlp",
                   *TINY], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = run_dirs(tmp_path / "outputs" / "runs")
    assert "20 classes" in (run / "dal-run.log").read_text()
    res = run_cli(["dataset=cifar100", f"dataset.root={root}", "dataset.labels=superclass"], cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "dataset.labels=superclass: unknown option; accepted: one of coarse, fine" in res.stderr
    assert len(run_dirs(tmp_path / "outputs" / "runs")) == 1  # refused before any run folder


def test_relative_data_paths_are_read_from_where_dal_run_started_also_with_chdir(tmp_path, monkeypatch, capsys):
    # before: with hydra.job.chdir=true the job looked for mine.npz (and data/) in its run folder:
    # "dataset.path=mine.npz: file not found"
    from conftest import run_cli_inprocess

    x = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    args = ["dataset=npz", "dataset.path=mine.npz", "arch=mlp", "search=fixed", "trainer.epochs=2",
            "budget.initial=20", "budget.batch=20", "budget.max_labels=40", "hydra.job.chdir=true"]
    code, out, err = run_cli_inprocess(args, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    (run,) = run_dirs(tmp_path / "outputs" / "runs")
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    code, _, err = run_cli_inprocess(args[:1] + ["dataset.path=gone.npz"] + args[2:], tmp_path, monkeypatch, capsys)
    assert code == 2 and f"dataset.path={tmp_path / 'gone.npz'}: file not found" in err


@pytest.mark.parametrize("dataset, damaged", [("cifar10", "cifar-10-batches-py/data_batch_2"),
                                              ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte.gz"),
                                              ("svhn", "SVHN/test_32x32.mat")])
def test_a_damaged_file_stops_a_sweep_before_any_job_starts(tmp_path, monkeypatch, capsys, dataset, damaged):
    # before: the check only saw that the files were there, and every job then failed alike
    from conftest import run_cli_inprocess

    root = tmp_path / "data"
    _write(dataset, root)
    (root / damaged).write_bytes((root / damaged).read_bytes()[: (root / damaged).stat().st_size // 2])
    code, out, err = run_cli_inprocess(["-m", f"dataset={dataset}", f"dataset.root={root}", "search=fixed",
                                        "arch=mlp", "seed=0,1", *TINY], tmp_path, monkeypatch, capsys)
    assert code == 2 and err.strip().startswith("dal-run: error: dataset.root=") and damaged.split("/")[-1] in err, err
    assert "is truncated, corrupt or not the official release's file" in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("status.json"))


def test_svhn_files_in_the_root_beside_an_empty_svhn_folder_are_read(tmp_path):
    # before: an empty SVHN/ hid them, and the error said to put them straight in dataset.root
    from dal_runner.data import torchvision_sets

    write_svhn(tmp_path / "cache", sizes=(("train", 6), ("test", 4)))
    for path in (tmp_path / "cache" / "SVHN").iterdir():
        path.rename(tmp_path / "cache" / path.name)
    assert len(torchvision_sets.load("svhn", tmp_path / "cache").x_train) == 6
