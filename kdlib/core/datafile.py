"""A user's own labelled texts as a study dataset: a file, a folder of split files, or a hub dataset id.

    read("reviews.csv", text_column="review", label_column="rating")  -> DatasetDict(train, validation, test)

Formats, by suffix: `.csv`, `.tsv`, `.jsonl` / `.json` (JSON Lines), `.parquet`. A folder holds one file per
split, named `train`, `validation` (or `dev`, `valid`) and `test`, each in one of those formats. The result
has the study's classification schema (`text`, `label` as a `ClassLabel`, and `text_pair` for sentence
pairs), so every step treats it like a registered dataset.

- Labels may be strings or integers; the class names are the distinct labels, sorted (numerically when every
  label is an integer), so the same data always gives the same label ids.
- Splits the data lacks are carved like the registry's (`data.SPLIT_SEED`, stratified): no split at all is
  split 8:1:1; a missing validation (or test) split is carved from train, a ninth of it (train:validation
  stays 8:1).
- Bad data stops with one line (`DataFileError`) before anything trains: text that is not valid in the
  encoding (the file, line and byte, and the option that reads it), a missing column (the columns there
  are), empty texts or labels (how many and which rows: nothing is dropped), a single class, a class too
  small to stratify. Duplicates are not errors: `overlaps` counts them for step 00's report.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from kdlib.core.data import carve, split_811

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
SPLIT_NAMES = {"train": "train", "validation": "validation", "dev": "validation", "valid": "validation",
               "test": "test"}
# 8:1:1 puts a tenth of each class in validation and in test: a class needs this many rows to be in both
# with at least one row.
MIN_ROWS_PER_CLASS = 10
SHOWN_ROWS = 5  # rows named in a message about empty cells


class DataFileError(ValueError):
    """The user's data cannot make a study dataset; the message is one line that says why and what to do."""


def looks_like_path(value: str) -> bool:
    """Whether a `data.dataset` value names a file or folder (rather than a registered name or hub id)."""
    return value.endswith(SUFFIXES) or value.startswith((".", "/", "~")) or Path(value).exists()


def split_files(path: Path) -> dict[str, Path]:
    """{split: file} of a dataset path: the file itself as "all", or a folder's split files."""
    if path.is_file():
        if not path.name.endswith(SUFFIXES):
            raise DataFileError(f"{path}: unknown format (use one of {', '.join(SUFFIXES)})")
        return {"all": path}
    if not path.is_dir():
        raise DataFileError(f"{path}: no such file or folder")
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        split = SPLIT_NAMES.get(file.name.split(".")[0])
        if split and file.name.endswith(SUFFIXES):
            if split in found:
                raise DataFileError(f"{path}: two files for the {split} split ({found[split].name}, {file.name})")
            found[split] = file
    if "train" not in found:
        raise DataFileError(f"{path}: no train file (expected train.csv, train.jsonl, ... beside validation and test)")
    return found


def content_digest(path: str | Path) -> str:
    """A hash of the bytes of a dataset path's files (with their split names): what keys its runs."""
    h = hashlib.sha256()
    for split, file in sorted(split_files(Path(path).expanduser()).items()):
        h.update(f"{split}\0{file.name}\0".encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------
# reading one file


def _decode(file: Path, encoding: str) -> str:
    raw = file.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataFileError(f"{file}: not valid {encoding} at line {line}, byte 0x{raw[e.start]:02x} "
                            f"(offset {e.start}); set data.encoding (for example latin-1 or cp1252) to read it"
                            ) from None
    except LookupError:
        raise DataFileError(f"data.encoding: unknown encoding {encoding!r}") from None


def read_frame(file: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """One file as a frame of strings (labels stay as written; empty cells are empty strings)."""
    if file.suffix == ".parquet":
        return pd.read_parquet(file)
    text = _decode(file, encoding)
    try:
        if file.suffix in (".csv", ".tsv"):
            return pd.read_csv(io.StringIO(text), sep="\t" if file.suffix == ".tsv" else ",", dtype=str,
                               keep_default_na=False)
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except ValueError as e:  # pandas' parse errors
        raise DataFileError(f"{file}: cannot be read as {file.suffix[1:]}: {str(e).splitlines()[0]}") from None


def _column(frame: pd.DataFrame, column: str, option: str, where: str) -> pd.Series:
    if column not in frame.columns:
        raise DataFileError(f"{where}: no column {column!r} (columns: {', '.join(map(str, frame.columns))}); "
                            f"set {option}")
    return frame[column]


def _empty(values: pd.Series) -> np.ndarray:
    return values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()


def _frame(frame: pd.DataFrame, columns: dict[str, tuple[str, str]], where: str,
           drop_empty: bool = False) -> pd.DataFrame:
    """The study's columns (text, [text_pair,] label) of a file's frame. Rows with an empty cell stop the read,
    naming them, unless `drop_empty` (then a warning counts them)."""
    out = pd.DataFrame({name: _column(frame, col, option, where) for name, (col, option) in columns.items()})
    empty = np.zeros(len(out), dtype=bool)
    for name, (col, option) in columns.items():
        rows_empty = _empty(out[name])
        if rows_empty.any() and not drop_empty:
            bad = np.flatnonzero(rows_empty)
            rows = ", ".join(str(r + 1) for r in bad[:SHOWN_ROWS]) + (", ..." if len(bad) > SHOWN_ROWS else "")
            raise DataFileError(f"{where}: {len(bad)} of {len(out)} rows have an empty {col!r} (data rows {rows}, "
                                f"counted from 1 after the header); fill or remove them, or set data.drop_empty: "
                                f"true to drop them (nothing is dropped otherwise)")
        empty |= rows_empty
    if empty.any():
        warnings.warn(f"{where}: dropped {int(empty.sum())} of {len(out)} rows with an empty cell (data.drop_empty)",
                      stacklevel=2)
    return out[~empty].reset_index(drop=True)


# --------------------------------------------------------------------------
# labels and splits


def class_names(labels: pd.Series) -> list[str]:
    """The distinct labels as names, sorted: numerically when every label is an integer, else as text."""
    values = labels.astype(str).str.strip().unique()
    try:
        return [str(v) for v in sorted(values, key=int)]
    except ValueError:
        return sorted(values)


def _check_classes(names: list[str], labels: pd.Series, where: str, min_rows: int) -> None:
    if len(names) < 2:
        raise DataFileError(f"{where}: a single class ({names[0]!r}); a classifier needs at least two")
    counts = labels.value_counts()
    small = counts[counts < min_rows]
    if len(small):
        shown = ", ".join(f"{k!r} ({v})" for k, v in small.items())
        raise DataFileError(f"{where}: too few rows to split by class: {shown}; each class needs at least "
                            f"{min_rows} here (add rows, merge the class, or give the splits as files)")


def _splits(frames: dict[str, pd.DataFrame], where: str) -> dict[str, pd.DataFrame]:
    """train/validation/test frames from the splits given (see the module's docstring)."""
    if set(frames) == {"all"}:
        all_rows = frames["all"]
        _check_classes(class_names(all_rows["label"]), all_rows["label"], where, MIN_ROWS_PER_CLASS)
        rows = split_811(all_rows["label"].to_numpy())
        return {s: all_rows.iloc[r].reset_index(drop=True) for s, r in rows.items()}
    out = dict(frames)
    train = out["train"]
    missing = [s for s in ("validation", "test") if s not in out]
    if missing:
        # a ninth of train per missing split; each class needs a row in every part
        _check_classes(class_names(train["label"]), train["label"], f"{where} (train)", 1 + 2 * len(missing))
    for split in missing:
        train = out["train"]
        rest, carved = carve(train["label"].to_numpy(), max(len(class_names(train["label"])),
                                                            round(len(train) / 9)))
        out["train"], out[split] = train.iloc[rest].reset_index(drop=True), train.iloc[carved].reset_index(drop=True)
    return {s: out[s] for s in ("train", "validation", "test")}


def to_dataset_dict(frames: dict[str, pd.DataFrame], where: str) -> datasets.DatasetDict:
    """Study-schema splits from frames holding text, [text_pair,] label (labels as written)."""
    for split, frame in frames.items():
        frame["label"] = frame["label"].astype(str).str.strip()
    names = class_names(pd.concat([f["label"] for f in frames.values()]))
    _check_classes(names, pd.concat([f["label"] for f in frames.values()]), where, 1)
    parts = _splits(frames, where)
    unseen = sorted(set(names) - set(parts["train"]["label"]))
    if unseen:
        raise DataFileError(f"{where}: class(es) {', '.join(map(repr, unseen))} never appear in train")
    features = {"text": datasets.Value("string")}
    if "text_pair" in parts["train"]:
        features["text_pair"] = datasets.Value("string")
    features["label"] = datasets.ClassLabel(names=names)
    ids = {n: i for i, n in enumerate(names)}
    out = {}
    for split, frame in parts.items():
        columns = {c: frame[c].astype(str).tolist() for c in features if c != "label"}
        columns["label"] = [ids[v] for v in frame["label"]]
        out[split] = datasets.Dataset.from_dict(columns, features=datasets.Features(features))
    return datasets.DatasetDict(out)


# --------------------------------------------------------------------------
# the entry points


def _columns(text_column: str | None, label_column: str | None, text_pair_column: str | None):
    columns = {"text": (text_column or "text", "data.text_column")}
    if text_pair_column:
        columns["text_pair"] = (text_pair_column, "data.text_pair_column")
    columns["label"] = (label_column or "label", "data.label_column")
    return columns


def read(path: str | Path, text_column: str | None = None, label_column: str | None = None,
         text_pair_column: str | None = None, encoding: str | None = None,
         drop_empty: bool = False) -> datasets.DatasetDict:
    """A file or a folder of split files as study splits; DataFileError (one line) for bad data. Columns
    default to `text` and `label`, the encoding to UTF-8."""
    path = Path(path).expanduser()
    columns = _columns(text_column, label_column, text_pair_column)
    frames = {split: _frame(read_frame(file, encoding or "utf-8"), columns, str(file), drop_empty)
              for split, file in split_files(path).items()}
    return to_dataset_dict(frames, str(path))


def read_hub(name: str, text_column: str | None = None, label_column: str | None = None,
             text_pair_column: str | None = None, drop_empty: bool = False) -> datasets.DatasetDict:
    """A hub dataset id (online users) with the same column options and splits as a file."""
    raw = datasets.load_dataset(name)
    columns = _columns(text_column, label_column, text_pair_column)
    frames = {}
    for split, ds in raw.items():
        split = SPLIT_NAMES.get(split, split)
        frame = ds.to_pandas()
        label = columns["label"][0]
        if label in ds.features and isinstance(ds.features[label], datasets.ClassLabel):
            frame[label] = [ds.features[label].int2str(int(v)) for v in frame[label]]
        frames["all" if len(raw) == 1 else split] = _frame(frame, columns, f"{name} ({split})", drop_empty)
    return to_dataset_dict({s: f for s, f in frames.items() if s in ("all", "train", "validation", "test")}, name)


def overlaps(dsd: datasets.DatasetDict, column: str = "text") -> pd.DataFrame:
    """Duplicated texts within each split and texts shared by two splits (counted, never dropped).

    Columns: `split` (a split, or "a & b" for a pair), `rows`, `duplicate_rows` (rows whose text appeared
    earlier in the split) and `shared_texts` (distinct texts in both splits of a pair)."""
    texts = {s: pd.Series(ds[column]) for s, ds in dsd.items()}
    rows = [{"split": s, "rows": len(t), "duplicate_rows": int(t.duplicated().sum()), "shared_texts": 0}
            for s, t in texts.items()]
    names = list(texts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = len(set(texts[a]) & set(texts[b]))
            rows.append({"split": f"{a} & {b}", "rows": len(texts[a]) + len(texts[b]), "duplicate_rows": 0,
                         "shared_texts": shared})
    return pd.DataFrame(rows)
