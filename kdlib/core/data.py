"""Dataset registry: every dataset of the study as a ``datasets.DatasetDict``.

Classification sets share one schema: ``text`` (string) and ``label`` (a ``ClassLabel``,
so ``dsd["train"].features["label"].names`` gives the class names), with splits ``train``,
``validation`` and ``test``. QA sets use the Hugging Face ``squad`` layout
(``id, title, context, question, answers{text, answer_start}``) and keep the splits they have.

``load(name)`` reads a local folder laid out like the study's ``shared/data`` (the
``data_dir`` argument, else ``$KD_DATA_DIR``) and falls back to the Hugging Face hub.
Splits that the sources do not provide are carved with a fixed ``SPLIT_SEED``, never the
run seed, so every profile and every seed is evaluated on the same test rows.
"""
from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

DATA_DIR_ENV = "KD_DATA_DIR"
SPLIT_SEED = 2021  # fixed on purpose: independent of the run seed

FIN_LABELS = ("negative", "neutral", "positive")
SST2_LABELS = ("negative", "positive")
NEWSGROUPS_LABELS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med",
    "sci.space", "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast",
    "talk.politics.misc", "talk.religion.misc",
)
# Seed 003's six high-level groups (its labels A-F), in that order.
NEWSGROUPS_COARSE_LABELS = ("comp", "forsale", "rec", "sci", "politics", "religion")
NEWSGROUPS_COARSE_OF = (5, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 3, 3, 3, 5, 4, 4, 4, 5)

QA_FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "title": datasets.Value("string"),
    "context": datasets.Value("string"),
    "question": datasets.Value("string"),
    "answers": {"text": datasets.List(datasets.Value("string")),
                "answer_start": datasets.List(datasets.Value("int32"))},
})

Tables = Mapping[str, pa.Table]


class DataNotFoundError(FileNotFoundError):
    """Neither the local folder nor the Hugging Face hub could provide a dataset."""


def data_dir() -> Path | None:
    """The local data folder from ``$KD_DATA_DIR``, or None when it is unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else None


_env_data_dir = data_dir  # `load` has a parameter of the same name


@dataclass(frozen=True)
class DatasetSpec:
    """How to obtain one dataset, locally or from the hub."""

    name: str
    task: str  # "classification" or "qa"
    description: str
    hub_id: str | None
    hub_config: str | None
    files: tuple[tuple[str, str], ...]  # (key, path relative to the data folder)
    build: Callable[..., datasets.DatasetDict]  # build(tables, source, **options)
    hub_splits: tuple[tuple[str, str], ...] = ()  # hub split name -> key in `files`

    def from_folder(self, folder: str | Path, **options) -> datasets.DatasetDict:
        """Build the dataset from a folder laid out like ``shared/data``."""
        tables = {key: pq.read_table(Path(folder) / rel) for key, rel in self.files}
        return self.build(tables, "local", **options)

    def hub_tables(self) -> dict[str, pa.Table]:
        """Download with ``datasets.load_dataset(hub_id, hub_config)``; tables keyed like ``files``."""
        if self.hub_id is None:
            raise DataNotFoundError(f"{self.name!r} has no copy on the Hugging Face hub")
        raw = datasets.load_dataset(self.hub_id, self.hub_config)
        rename = dict(self.hub_splits)
        return {rename.get(s, s): d.with_format("arrow")[:] for s, d in raw.items()}


# ---------------------------------------------------------------- helpers

def _frame(table: pa.Table) -> pd.DataFrame:
    # hub tables call the text column `sentence`; local ones `text`
    df = table.to_pandas()
    return df.rename(columns={"sentence": "text"})


def _check_names(df: pd.DataFrame, names: tuple[str, ...]) -> None:
    """Fail loudly if the file's label ids do not mean what the registry says."""
    if "label_name" in df:
        found = df.groupby("label")["label_name"].first()
        wrong = {i: n for i, n in found.items() if i < 0 or i >= len(names) or names[i] != n}
        if wrong:
            raise ValueError(f"unexpected label ids/names {wrong}; expected {names}")


def _classification(df: pd.DataFrame, names: tuple[str, ...],
                    extra: Mapping[str, tuple[str, ...]] | None = None) -> datasets.Dataset:
    """A Dataset with ``text``, ``label`` (ClassLabel) and any extra ClassLabel columns."""
    extra = extra or {}
    feats = {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))}
    feats.update({col: datasets.ClassLabel(names=list(n)) for col, n in extra.items()})
    data = {"text": df["text"].astype(str).tolist(), "label": df["label"].astype(int).tolist()}
    data.update({col: df[col].astype(int).tolist() for col in extra})
    return datasets.Dataset.from_dict(data, features=datasets.Features(feats))


def carve(labels: np.ndarray, size: int | float, seed: int = SPLIT_SEED):
    """Stratified (rest, carved) row positions, each sorted so row order is the file order."""
    rest, carved = train_test_split(np.arange(len(labels)), test_size=size,
                                    stratify=labels, random_state=seed)
    return np.sort(rest), np.sort(carved)


def split_811(labels, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Stratified 8:1:1 row positions for a dataset without official splits.

    For 4,846 rows: train 3,876, validation 485, test 485. Depends only on the labels and
    the seed, so row-aligned corpora with the same labels get the same rows in each split.
    """
    labels = np.asarray(labels)
    n_eval = round(0.1 * len(labels))
    rest, test = carve(labels, n_eval, seed)
    train, val = carve(labels[rest], n_eval, seed)
    return {"train": rest[train], "validation": rest[val], "test": test}


# ---------------------------------------------------------------- builders

def _build_fin(tables: Tables, source: str) -> datasets.DatasetDict:
    # Financial PhraseBank (and its Korean translation) has no official split.
    df = _frame(tables["all"])
    _check_names(df, FIN_LABELS)
    rows = split_811(df["label"].to_numpy())
    return datasets.DatasetDict({s: _classification(df.iloc[r], FIN_LABELS) for s, r in rows.items()})


def _build_sst2(tables: Tables, source: str) -> datasets.DatasetDict:
    # GLUE's test labels are hidden: GLUE validation becomes our test, and a
    # validation split of the same size is carved from train.
    train, test = _frame(tables["train"]), _frame(tables["validation"])
    _check_names(train, SST2_LABELS)
    rest, val = carve(train["label"].to_numpy(), len(test))
    return datasets.DatasetDict({
        "train": _classification(train.iloc[rest], SST2_LABELS),
        "validation": _classification(train.iloc[val], SST2_LABELS),
        "test": _classification(test, SST2_LABELS),
    })


_QUOTE_RE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def strip_news_parts(text: str) -> str:
    """Drop a post's headers, signature and quoted lines.

    The heuristics of scikit-learn's ``fetch_20newsgroups(remove=("headers", "footers",
    "quotes"))``: headers end at the first blank line; the signature starts at the last
    blank or all-hyphen line (unless that is the first line); quotes are lines starting
    with ``>`` or ``|`` and lines that introduce a quote ("writes:", "In article", ...).
    """
    text = text.partition("\n\n")[2]
    lines = text.strip().split("\n")
    for cut in range(len(lines) - 1, -1, -1):
        if lines[cut].strip().strip("-") == "":
            break
    if cut > 0:
        text = "\n".join(lines[:cut])
    return "\n".join(line for line in text.split("\n") if not _QUOTE_RE.search(line))


def normalize_news_text(text: str) -> str:
    """Lower-case, delete characters other than a-z/0-9/whitespace, collapse whitespace."""
    text = re.sub(r"[^a-z0-9\s]", "", text.lower())
    return " ".join(text.split())


def _build_newsgroups(tables: Tables, source: str, clean_newsgroups: bool = True,
                      ) -> datasets.DatasetDict:
    """20 Newsgroups (bydate): 20 fine labels plus seed 003's 6 coarse groups.

    With ``clean_newsgroups`` (the default), as in seed 003: headers, signatures and
    quotes are removed, text is normalized (``normalize_news_text``), empty texts and
    duplicates are dropped (within a split, and test texts that also occur in train).
    Then 20% of train becomes validation (stratified, ``SPLIT_SEED``).
    Counts: cleaned train 8,765 / validation 2,192 / test 7,274 (exactly seed 003's);
    raw train 9,051 / validation 2,263 / test 7,532.
    """
    train, test = _frame(tables["train"]), _frame(tables["test"])
    _check_names(train, NEWSGROUPS_LABELS)
    if clean_newsgroups:
        for df in (train, test):
            # the hub copy (SetFit/20_newsgroups) already lacks headers, signatures and quotes
            raw = df["text"] if source == "hub" else df["text"].map(strip_news_parts)
            df["text"] = raw.map(normalize_news_text)
        train = train[train["text"] != ""].drop_duplicates("text")
        test = test[test["text"] != ""].drop_duplicates("text")
        test = test[~test["text"].isin(set(train["text"]))]
    train, test = train.reset_index(drop=True), test.reset_index(drop=True)
    for df in (train, test):
        df["coarse_label"] = np.asarray(NEWSGROUPS_COARSE_OF)[df["label"].to_numpy()]
    rest, val = carve(train["label"].to_numpy(), 0.2)
    extra = {"coarse_label": NEWSGROUPS_COARSE_LABELS}
    parts = {"train": train.iloc[rest], "validation": train.iloc[val], "test": test}
    return datasets.DatasetDict(
        {s: _classification(df, NEWSGROUPS_LABELS, extra) for s, df in parts.items()})


def _build_qa(tables: Tables, source: str) -> datasets.DatasetDict:
    # Keep the squad columns only (the local SQuAD adds `answer_start_ambiguous`);
    # answer_start becomes int32 everywhere, as in the hub's `squad`.
    out = {}
    for split, table in tables.items():
        if "title" not in table.column_names:  # the hub's xquad has no titles
            table = table.append_column("title", pa.array([""] * len(table), pa.string()))
        table = table.select(list(QA_FEATURES))
        out[split] = datasets.Dataset(table.cast(QA_FEATURES.arrow_schema))
    return datasets.DatasetDict(out)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        "fin_sentiment", "classification",
        "Financial PhraseBank v1.0, sentences_50agree: 4,846 English financial-news sentences, "
        "negative/neutral/positive; stratified 8:1:1 split (SPLIT_SEED). Stands in for seed "
        "000's private 3-class news data.",
        "takala/financial_phrasebank", "sentences_50agree",
        (("all", "financial_phrasebank/sentences_50agree.parquet"),), _build_fin,
        hub_splits=(("train", "all"),)),
    DatasetSpec(
        "fin_sentiment_ko", "classification",
        "Korean translation of Financial PhraseBank 50agree, row-aligned with it; same labels "
        "and the same rows in each split as fin_sentiment (a parallel corpus).",
        None, None,  # no hub copy is known
        (("all", "financial_phrasebank_ko/finance_data_ko.parquet"),), _build_fin),
    DatasetSpec(
        "sst2", "classification",
        "GLUE SST-2; GLUE validation (872) is the test split, validation is 872 rows "
        "carved from train (stratified, SPLIT_SEED).",
        "nyu-mll/glue", "sst2",
        (("train", "glue/sst2/train.parquet"), ("validation", "glue/sst2/validation.parquet")),
        _build_sst2),
    DatasetSpec(
        "newsgroups20", "classification",
        "20 Newsgroups (bydate), 20 fine labels + `coarse_label` (seed 003's 6 groups); "
        "cleaned and de-duplicated as in seed 003 unless clean_newsgroups=False; "
        "validation = 20% of train (stratified, SPLIT_SEED).",
        "SetFit/20_newsgroups", None,
        (("train", "20newsgroups/train.parquet"), ("test", "20newsgroups/test.parquet")),
        _build_newsgroups),
    DatasetSpec(
        "xquad_en", "qa",
        "XQuAD English: 1,190 questions from the SQuAD v1.1 dev set, one answer each; "
        "split `validation` only.",
        "google/xquad", "xquad.en",
        (("validation", "xquad/validation.parquet"),), _build_qa),
    DatasetSpec(
        "squad", "qa",
        "SQuAD v1.1: train 87,599, validation 10,570 (up to 3 reference answers).",
        "rajpurkar/squad", None,
        (("train", "squad/train.parquet"), ("validation", "squad/validation.parquet")),
        _build_qa),
]}


def list_datasets() -> list[str]:
    """Registered dataset names."""
    return list(DATASETS)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


_TRUE = {"1", "true", "yes", "on"}


def _offline_requested() -> str | None:
    # `datasets` reads these variables once, at import. If they were set later it would
    # still go online and retry for ~20 s, so honour them here instead.
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUE:
            return var
    return None


def load(name: str, data_dir: str | Path | None = None, **options) -> datasets.DatasetDict:
    """Load a registered dataset: the local folder first, else the Hugging Face hub.

    ``data_dir`` defaults to ``$KD_DATA_DIR``. ``options`` go to the builder (only
    ``newsgroups20`` has one: ``clean_newsgroups``). Raises ``ValueError`` for an unknown
    name and ``DataNotFoundError`` naming both attempts when neither works.
    """
    spec = _spec(name)
    folder = Path(data_dir).expanduser() if data_dir is not None else _env_data_dir()
    first = spec.files[0][1]
    if folder is None:
        local = (f"{DATA_DIR_ENV} is not set and no data_dir was given "
                 f"(expected <data dir>/{first})")
    else:
        missing = [rel for _, rel in spec.files if not (folder / rel).is_file()]
        if not missing:
            return spec.from_folder(folder, **options)
        origin = "data_dir argument" if data_dir is not None else DATA_DIR_ENV
        local = f"{folder / missing[0]} not found (data folder from {origin})"

    call = f"datasets.load_dataset({spec.hub_id!r}" + (f", {spec.hub_config!r})" if spec.hub_config else ")")
    if spec.hub_id is None:
        hub = "no Hugging Face hub copy is registered for this dataset"
    elif (var := _offline_requested()) and not datasets.config.HF_HUB_OFFLINE:
        hub = f"{call} not tried: {var} is set (offline mode)"
    else:
        try:
            tables = spec.hub_tables()
        except Exception as exc:  # any download failure: report it together with the local one
            reason = (str(exc).strip().splitlines() or [""])[0]
            hub = f"{call} failed: {type(exc).__name__}: {reason}"
        else:
            return spec.build(tables, "hub", **options)
    raise DataNotFoundError(
        f"could not load dataset {name!r}.\n  local: {local}\n  hub:   {hub}\n"
        f"Point {DATA_DIR_ENV} at a folder laid out like shared/data, or go online.")


# ---------------------------------------------------------------- subsets and summaries

def _largest_remainder(counts: np.ndarray, n: int) -> np.ndarray:
    """Split n over classes in proportion to counts; floors plus the largest remainders."""
    exact = n * counts / counts.sum()
    take = np.floor(exact).astype(int)
    # ties go to the lower class id (stable sort), so the result is deterministic
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    return take


def stratified_subset(dsd: datasets.DatasetDict, sizes: Mapping[str, int | None], seed: int,
                      label_column: str = "label") -> datasets.DatasetDict:
    """Exactly ``sizes[split]`` rows per split, keeping class proportions.

    ``None`` (or a split not named) keeps the split whole; naming a split the dataset
    lacks is an error unless its size is None. Per-class counts come from
    largest-remainder rounding, so each is within one row of the exact share and they sum
    to n. Rows are drawn with ``seed`` and kept in their original order. Splits without
    ``label_column`` (QA) get a plain seeded random subset.
    """
    # a missing split is an error only when a size was asked for (None means "all of it")
    unknown = sorted(s for s, n in sizes.items() if s not in dsd and n is not None)
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; have {list(dsd)}")
    out = {}
    for split, ds in dsd.items():
        n = sizes.get(split)
        if n is None:
            out[split] = ds
            continue
        if not 0 <= n <= len(ds):
            raise ValueError(f"cannot take {n} rows from split {split!r}: it has {len(ds)} rows")
        # a per-split stream, stable across processes (str hashes are salted, crc32 is not)
        rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
        if label_column in ds.column_names:
            labels = np.asarray(ds[label_column])
            classes, counts = np.unique(labels, return_counts=True)
            take = _largest_remainder(counts, n)
            rows = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                                   for c, k in zip(classes, take)])
        else:
            rows = rng.choice(len(ds), n, replace=False)
        out[split] = ds.select(np.sort(rows))
    return datasets.DatasetDict(out)


def class_balance(dsd: datasets.DatasetDict, column: str = "label") -> pd.DataFrame:
    """Class counts per split, in long format (seed 000's Table 1 is the ``all`` rows).

    Columns: ``split`` (each split, then ``all`` = their union), ``label`` (class name),
    ``count``, ``total`` (rows in the split) and ``percent`` (count / total * 100).
    ``df.pivot(index="split", columns="label", values="count")`` gives the wide table.
    """
    first = next(iter(dsd.values()))
    if column not in first.features or not isinstance(first.features[column], datasets.ClassLabel):
        raise ValueError(f"class_balance needs a ClassLabel column {column!r}")
    names = first.features[column].names
    per_split = {s: np.bincount(ds[column], minlength=len(names)) for s, ds in dsd.items()}
    per_split["all"] = sum(per_split.values())
    rows = [{"split": s, "label": names[i], "count": int(c[i]), "total": int(c.sum()),
             "percent": 100.0 * c[i] / c.sum() if c.sum() else float("nan")}
            for s, c in per_split.items() for i in range(len(names))]
    return pd.DataFrame(rows)


def length_stats(dsd: datasets.DatasetDict, tokenizer=None, column: str = "text",
                 batch_size: int = 1000) -> pd.DataFrame:
    """Per split: n and mean/median/p95/max length of ``column``.

    Words are whitespace-separated tokens (``words_*``). With a tokenizer, ``tokens_*``
    count its tokens WITHOUT special tokens ([CLS]/[SEP] add 2 more for a BERT input).
    For QA sets pass ``column="context"`` or ``"question"``.
    """
    rows = []
    for split, ds in dsd.items():
        if column not in ds.column_names:
            raise ValueError(f"split {split!r} has no column {column!r}")
        texts = list(ds[column])
        lengths = {"words": [len(t.split()) for t in texts]}
        if tokenizer is not None:
            lengths["tokens"] = [len(ids) for i in range(0, len(texts), batch_size)
                                 for ids in tokenizer(texts[i:i + batch_size],
                                                      add_special_tokens=False)["input_ids"]]
        row = {"split": split, "n": len(texts)}
        for unit, values in lengths.items():
            v = np.asarray(values, dtype=float)
            row.update({f"{unit}_mean": v.mean(), f"{unit}_median": np.median(v),
                        f"{unit}_p95": np.percentile(v, 95), f"{unit}_max": v.max()}
                       if len(v) else {})
        rows.append(row)
    return pd.DataFrame(rows)


def token_lengths(dsd: datasets.DatasetDict, tokenizer, column: str = "text") -> pd.DataFrame:
    """One row per text: ``split`` and ``tokens``, the length of the model input WITH [CLS]/[SEP]
    (so it compares directly with ``max_length``). For histograms; ``length_stats`` summarises."""
    frames = [pd.DataFrame({"split": split, "tokens": [len(ids) for ids in tokenizer(list(ds[column]))["input_ids"]]})
              for split, ds in dsd.items()]
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------------------------------
# a profile's data, ready for a model


def tokenize(dsd: datasets.DatasetDict, tokenizer, max_length: int) -> datasets.DatasetDict:
    """Token ids (truncated to max_length, not padded: batches are padded to their longest row) and label."""

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    return dsd.map(encode, batched=True, desc="tokenize",
                   remove_columns=[c for c in dsd["train"].column_names if c != "label"])


def label_names(dsd: datasets.DatasetDict) -> list[str]:
    return list(dsd["train"].features["label"].names)
