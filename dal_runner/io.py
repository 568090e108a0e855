"""Run-folder schema and atomic writes (temp file in the same folder, then rename)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

ROUNDS_CSV = "rounds.csv"
SEARCH_CSV = "search.csv"
SELECTED_CSV = "selected.csv"
SUMMARY_JSON = "summary.json"
STATUS_JSON = "status.json"
LEARNING_CURVE_PNG = "learning_curve.png"
STATE_DIR = "state"

_UMASK = os.umask(0)
os.umask(_UMASK)

ROUND_FIELDS = [
    "round", "n_labeled", "test_accuracy", "test_loss", "arch", "n_params", "train_epochs",
    "search_seconds", "train_seconds", "eval_seconds", "query_seconds", "infer_seconds", "select_seconds",
    "round_seconds",
]
SELECTED_FIELDS = ["round", "pool_index"]


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: Path, rows: Iterable[Dict[str, Any]], fields: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text_atomic(path, buf.getvalue())


def read_csv(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_json_object(path: Path) -> Optional[dict]:
    """A JSON file's object; None where the file is missing, unreadable or holds no object."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def completed_summary(run_dir: Path) -> Optional[dict]:
    """summary.json of a run folder whose status is completed, else None."""
    try:
        if read_json(run_dir / STATUS_JSON).get("state") == "completed":
            return read_json(run_dir / SUMMARY_JSON)
    except (OSError, ValueError):
        pass
    return None


def utc_now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """Writes one run's files; every write replaces the file atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def remove_partial_writes(self) -> List[Path]:
        """The temporary files of writes a SIGKILL cut short (`.<name>.<random>.tmp`, in the folder
        and in state/): never results, so a run that starts or resumes removes them. Call it only
        from the process that owns the folder (job_control.only_process_in)."""
        found = [p for folder in (self.path, self.path / STATE_DIR) if folder.is_dir()
                 for p in folder.glob(".*.tmp") if p.is_file()]
        for p in found:
            p.unlink(missing_ok=True)
        return found

    def status(self, state: str, **info: Any) -> None:
        import socket

        # host and pid let `dal-run resume=` refuse a folder whose run is still going
        write_json_atomic(self.path / STATUS_JSON, {"state": state, "updated": utc_now(), "host": socket.gethostname(),
                                                    "pid": os.getpid(), **info})

    def rounds(self, rows: List[Dict[str, Any]], extra_fields: Sequence[str] = ()) -> None:
        write_csv_atomic(self.path / ROUNDS_CSV, rows, ROUND_FIELDS + [f for f in extra_fields if f not in ROUND_FIELDS])

    def selected(self, rows: List[Dict[str, Any]]) -> None:
        write_csv_atomic(self.path / SELECTED_CSV, rows, SELECTED_FIELDS)

    def search(self, rows: List[Dict[str, Any]], fields: Sequence[str]) -> None:
        write_csv_atomic(self.path / SEARCH_CSV, rows, fields)

    def summary(self, summary: Dict[str, Any]) -> None:
        write_json_atomic(self.path / SUMMARY_JSON, summary)
