"""Loading datasets: built-in names, user files (jsonl, json, csv), ``datasets.Dataset`` objects, the hub.

A dataset is a list of labelled examples per split, the ordered label names, and optional one-sentence class
descriptions. Built-in names resolve from a data folder (``--data-dir`` or ``PROMPTMIX_DATA_DIR``) laid out as
``<dir>/<name>/{train,test}.jsonl, labels.json, descriptions.json``, else from the Hugging Face hub, else a
clear error says how to supply the data. Every error names the file and line, or the class, at fault.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from promptmix_dspy.data.builtins import BUILTIN_DATASETS, BUILTIN_TASKS, DATA_DIR_ENV, TASK_FILE
from promptmix_dspy.data.types import DataError, Dataset, Example, check_descriptions, check_labels

__all__ = ["load_dataset", "load_examples", "read_jsonl"]

logger = logging.getLogger(__name__)



# ----------------------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    name_or_path: str | Path | Any,
    *,
    data_dir: str | Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
    labels: list[str] | None = None,
    descriptions: str | Path | dict[str, str] | None = None,
    test: str | Path | Any | None = None,
    name: str | None = None,
) -> Dataset:
    """Load a built-in dataset by name, a user file/folder (jsonl, json, csv), or a ``datasets.Dataset``."""
    if _is_hf_dataset(name_or_path):
        return _from_hf_object(name_or_path, test, text_column, label_column, labels, descriptions, name)
    text = str(name_or_path)
    if text in BUILTIN_DATASETS and not Path(text).exists():
        return _load_builtin(text, data_dir)
    path = Path(text)
    if not path.exists():
        raise DataError(f"dataset {text!r} is neither a built-in name {list(BUILTIN_DATASETS)} nor an "
                        f"existing file or folder")
    if path.is_dir():
        return _load_folder(path, text_column, label_column, labels, descriptions, name)
    train = load_examples(path, text_column, label_column)
    test_rows = load_examples(Path(test), text_column, label_column) if test is not None else []
    label_names = labels or _labels_in_order(train + test_rows)
    descs = _read_descriptions(descriptions, label_names)
    return Dataset(name or path.stem, label_names, train, test_rows, descs, source=str(path))


def _load_builtin(name: str, data_dir: str | Path | None) -> Dataset:
    folder = data_dir or os.environ.get(DATA_DIR_ENV)
    if folder:
        path = Path(folder) / name
        if not (path / "train.jsonl").exists():
            raise DataError(f"built-in dataset {name!r}: {path / 'train.jsonl'} does not exist (data dir "
                            f"{folder!r}); expected <data-dir>/{name}/train.jsonl, test.jsonl, labels.json")
        return _load_folder(path, "text", "label", None, None, name)
    try:
        from promptmix_dspy.data.hub import load_from_hub
        return load_from_hub(name)
    except Exception as exc:  # the hub is optional: any failure becomes the how-to-supply error
        raise DataError(
            f"built-in dataset {name!r}: no data folder given and the Hugging Face hub failed ({exc}). "
            f"Pass --data-dir DIR (or set {DATA_DIR_ENV}) to a folder holding {name}/train.jsonl, test.jsonl "
            f"and labels.json, or pass a jsonl/csv file as --dataset."
        ) from exc


def _load_folder(path: Path, text_column: str, label_column: str, labels: list[str] | None,
                 descriptions: str | Path | dict[str, str] | None, name: str | None) -> Dataset:
    train_file = _first_existing(path, ("train.jsonl", "train.json", "train.csv"))
    if train_file is None:
        raise DataError(f"{path}: no train.jsonl, train.json or train.csv in this folder")
    test_file = _first_existing(path, ("test.jsonl", "test.json", "test.csv"))
    train = load_examples(train_file, text_column, label_column)
    test_rows = load_examples(test_file, text_column, label_column) if test_file else []
    labels_file = path / "labels.json"
    if labels is None and labels_file.exists():
        labels = _read_json(labels_file)
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{labels_file}: must be a JSON list of label-name strings")
        check_labels(labels, where=str(labels_file))
        _check_rows_known(train, labels, train_file)
        if test_file:
            _check_rows_known(test_rows, labels, test_file)
    label_names = labels or _labels_in_order(train + test_rows)
    if descriptions is None and (path / "descriptions.json").exists():
        descriptions = path / "descriptions.json"
    descs = _read_descriptions(descriptions, label_names)
    task = _read_task(path / TASK_FILE) or BUILTIN_TASKS.get(name or "")
    return Dataset(name or path.name, label_names, train, test_rows, descs, source=str(path), task=task)


def _read_task(path: Path) -> str | None:
    """The one-sentence task description in a data folder's task.txt, if there is one."""
    if not path.is_file():
        return None
    try:
        text = " ".join(path.read_bytes().decode("utf-8").split())
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if not text:
        raise DataError(f"{path}: empty; write one sentence saying what the texts are and what the classes tell "
                        f"apart, or delete the file")
    return text


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def load_examples(path: Path, text_column: str = "text", label_column: str = "label") -> list[Example]:
    """Read examples from a .jsonl, .json (list of objects) or .csv file, validating every row."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        records = _read_csv(path)
    elif suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path}: a .json data file must hold a list of objects")
        records = [(i + 1, r) for i, r in enumerate(data)]
    else:
        records = list(read_jsonl(path))
    if not records:
        raise DataError(f"{path}: the file is empty (no examples)")
    return [_to_example(row, line, path, text_column, label_column) for line, row in records]


def read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; invalid UTF-8 or JSON names the line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _read_csv(path: Path) -> list[tuple[int, dict]]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            return [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc


def _to_example(row: dict, line: int, path: Path, text_column: str, label_column: str) -> Example:
    for column in (text_column, label_column):
        if column not in row:
            raise DataError(f"{path}:{line}: missing column {column!r} (found {sorted(row)}); set the "
                            f"text/label column names with --text-column / --label-column")
    text, label = row[text_column], row[label_column]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{path}:{line}: column {text_column!r} must be a non-empty string, got {text!r}")
    if isinstance(label, bool) or not isinstance(label, (str, int)) or str(label).strip() == "":
        raise DataError(f"{path}:{line}: column {label_column!r} must be a non-empty string or int, got {label!r}")
    return Example(text, str(label))


def _labels_in_order(rows: list[Example]) -> list[str]:
    """Labels in order of first appearance: deterministic, unlike set()."""
    return list(dict.fromkeys(ex.label for ex in rows))


def _check_rows_known(rows: list[Example], labels: list[str], path: Path) -> None:
    known = set(labels)
    for i, ex in enumerate(rows):
        if ex.label not in known:
            raise DataError(f"{path}: row {i + 1} has label {ex.label!r}, which labels.json does not list")


def _read_descriptions(source: str | Path | dict[str, str] | None, labels: list[str]) -> dict[str, str]:
    if source is None:
        return {}
    where = "descriptions" if isinstance(source, dict) else str(source)
    data = source if isinstance(source, dict) else _read_json(Path(source))
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise DataError(f"{where}: must be a JSON object mapping each label name to a one-sentence description")
    check_descriptions(data, labels, where)
    return dict(data)


# ----------------------------------------------------------------------------------------------------------
# datasets.Dataset objects


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "column_names")


def _from_hf_object(train_ds: Any, test_ds: Any, text_column: str, label_column: str,
                    labels: list[str] | None, descriptions: Any, name: str | None) -> Dataset:
    label_names = labels or _class_label_names(train_ds, label_column)
    train = _hf_rows(train_ds, text_column, label_column, label_names, "train")
    test_rows = _hf_rows(test_ds, text_column, label_column, label_names, "test") if test_ds is not None else []
    label_names = label_names or _labels_in_order(train + test_rows)
    descs = _read_descriptions(descriptions, label_names)
    return Dataset(name or "user_dataset", label_names, train, test_rows, descs, source="datasets.Dataset")


def _class_label_names(ds: Any, label_column: str) -> list[str] | None:
    feature = ds.features.get(label_column) if hasattr(ds, "features") else None
    return list(feature.names) if feature is not None and hasattr(feature, "names") else None


def _hf_rows(ds: Any, text_column: str, label_column: str, names: list[str] | None, split: str) -> list[Example]:
    for column in (text_column, label_column):
        if column not in ds.column_names:
            raise DataError(f"datasets.Dataset ({split}): missing column {column!r} (has {ds.column_names})")
    rows = []
    for i, rec in enumerate(ds):
        label = rec[label_column]
        if names is not None and isinstance(label, int) and not isinstance(label, bool):
            label = names[label]
        rows.append(_to_example({text_column: rec[text_column], label_column: label}, i + 1,
                                Path(f"<datasets.Dataset {split}>"), text_column, label_column))
    return rows
