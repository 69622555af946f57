"""Tests of kdlib.core.data on the real datasets (a local folder laid out like shared/data)."""
from __future__ import annotations

import os
import random
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from kdlib.core import data as D


def _find_data_dir() -> Path | None:
    env = os.environ.get(D.DATA_DIR_ENV)
    # the repository is cloned next to a `shared/` folder
    for candidate in ([Path(env)] if env else []) + [Path(__file__).resolve().parents[2] / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = _find_data_dir()
    if root is None:
        pytest.skip(f"no local data: set {D.DATA_DIR_ENV} or place the data in ../shared/data")
    return root


@pytest.fixture(scope="module")
def fin(data_root):
    return D.load("fin_sentiment", data_root)


@pytest.fixture(scope="module")
def news(data_root):
    return D.load("newsgroups20", data_root)


@pytest.fixture(scope="module")
def xquad(data_root):
    return D.load("xquad_en", data_root)


def _sizes(dsd):
    return {split: len(ds) for split, ds in dsd.items()}


# ---------------------------------------------------------------- registry and errors

def test_registry():
    assert D.list_datasets() == ["fin_sentiment", "fin_sentiment_ko", "sst2", "newsgroups20",
                                 "xquad_en", "squad"]
    assert {n: s.task for n, s in D.DATASETS.items()} == {
        "fin_sentiment": "classification", "fin_sentiment_ko": "classification",
        "sst2": "classification", "newsgroups20": "classification", "xquad_en": "qa", "squad": "qa"}
    with pytest.raises(ValueError, match="unknown dataset 'nsmc'.*fin_sentiment.*squad"):
        D.load("nsmc")


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    assert D.data_dir() is None
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    assert D.data_dir() == tmp_path


def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_not_found_message_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    _offline(monkeypatch)
    with pytest.raises(D.DataNotFoundError) as err:
        D.load("fin_sentiment")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert str(tmp_path / "financial_phrasebank" / "sentences_50agree.parquet") in msg
    assert "KD_DATA_DIR" in msg
    assert "'takala/financial_phrasebank'" in msg and "sentences_50agree" in msg
    # the one-line reason the hub was not reached: our own check of the variable, or the library's
    # refusal when the variable was already set as it was imported
    assert "HF_HUB_OFFLINE" in msg or "OfflineModeIsEnabled" in msg


def test_not_found_message_with_hub_error(monkeypatch, tmp_path):
    # datasets already imported: flip its own offline switch so load_dataset itself fails (fast)
    monkeypatch.delenv(D.DATA_DIR_ENV, raising=False)
    _offline(monkeypatch)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(D.DataNotFoundError) as err:
        D.load("squad")
    msg = str(err.value)
    assert "KD_DATA_DIR is not set" in msg and "squad/train.parquet" in msg
    assert "datasets.load_dataset('rajpurkar/squad') failed: " in msg
    hub_line = next(line for line in msg.splitlines() if line.strip().startswith("hub:"))
    assert len(hub_line) > len("  hub:   datasets.load_dataset('rajpurkar/squad') failed: ")
    # a dataset without a hub copy says so
    monkeypatch.setenv(D.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(D.DataNotFoundError, match="no Hugging Face hub copy"):
        D.load("fin_sentiment_ko")


# ---------------------------------------------------------------- Financial PhraseBank

FIN_COUNTS = np.array([604, 2879, 1363])  # negative / neutral / positive, 50agree


def test_fin_sentiment_splits(fin):
    assert _sizes(fin) == {"train": 3876, "validation": 485, "test": 485}
    assert sum(_sizes(fin).values()) == 4846
    for split, ds in fin.items():
        assert ds.features["label"].names == ["negative", "neutral", "positive"]
        assert ds.features["text"] == datasets.Value("string")
        counts = np.bincount(ds["label"], minlength=3)
        exact = len(ds) * FIN_COUNTS / FIN_COUNTS.sum()
        assert np.all(np.abs(counts - exact) <= 1), (split, counts, exact)


def test_fin_sentiment_rows_are_the_file_rows(fin, data_root):
    raw = pd.read_parquet(data_root / "financial_phrasebank" / "sentences_50agree.parquet")
    rows = D.split_811(raw["label"].to_numpy())
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(len(raw)))
    for split, idx in rows.items():
        assert fin[split]["text"] == raw["text"].iloc[idx].tolist()  # byte-for-byte, file order


def test_fin_sentiment_split_is_fixed(fin, data_root):
    # the split seed is a module constant: global RNG state (the run seed) must not matter
    for seed in (0, 12345):
        random.seed(seed)
        np.random.seed(seed)
        again = D.load("fin_sentiment", data_root)
        for split in fin:
            assert again[split]["text"] == fin[split]["text"]


def test_fin_sentiment_ko_is_parallel(fin, data_root):
    ko = D.load("fin_sentiment_ko", data_root)
    assert _sizes(ko) == _sizes(fin)
    raw_en = pd.read_parquet(data_root / "financial_phrasebank" / "sentences_50agree.parquet")
    raw_ko = pd.read_parquet(data_root / "financial_phrasebank_ko" / "finance_data_ko.parquet")
    assert raw_ko["text_en_fpb"].tolist() == raw_en["text"].tolist()  # the files are row-aligned
    rows = D.split_811(raw_ko["label"].to_numpy())
    for split, idx in rows.items():
        assert ko[split].features["label"].names == fin[split].features["label"].names
        assert list(ko[split]["label"]) == list(fin[split]["label"])
        # the same file rows in the same order: a parallel corpus
        assert list(ko[split]["text"]) == raw_ko["text"].iloc[idx].tolist()
        assert list(fin[split]["text"]) == raw_en["text"].iloc[idx].tolist()
    assert any("\uac00" <= ch <= "\ud7a3" for ch in ko["test"][0]["text"])  # Hangul


def test_class_balance_fin(fin):
    cb = D.class_balance(fin)
    assert list(cb.columns) == ["split", "label", "count", "total", "percent"]
    overall = cb[cb["split"] == "all"].set_index("label")
    assert overall["count"].to_dict() == {"negative": 604, "neutral": 2879, "positive": 1363}
    assert set(overall["total"]) == {4846}
    assert overall.loc["neutral", "percent"] == pytest.approx(100 * 2879 / 4846)
    assert cb.groupby("split")["percent"].sum().to_numpy() == pytest.approx(100.0)
    wide = cb.pivot(index="split", columns="label", values="count")
    assert wide.loc["test"].sum() == 485
    with pytest.raises(ValueError):
        D.class_balance(datasets.DatasetDict({"validation": datasets.Dataset.from_dict({"x": [1]})}))


# ---------------------------------------------------------------- SST-2

def test_sst2(data_root):
    sst = D.load("sst2", data_root)
    assert _sizes(sst) == {"train": 67349 - 872, "validation": 872, "test": 872}
    assert sst["train"].features["label"].names == ["negative", "positive"]
    # test = GLUE validation (428 negative / 444 positive); validation stratified from train
    assert np.bincount(sst["test"]["label"]).tolist() == [428, 444]
    val = np.bincount(sst["validation"]["label"])
    assert abs(val[1] - 872 * 37569 / 67349) <= 1
    assert sst["test"][0]["text"] == "it 's a charming and often affecting journey . "


# ---------------------------------------------------------------- 20 Newsgroups

def test_newsgroups_labels(news, data_root):
    feats = news["train"].features
    names = (data_root / "20newsgroups" / "label_names.txt").read_text().split()
    assert feats["label"].names == names and len(names) == 20
    assert feats["coarse_label"].names == ["comp", "forsale", "rec", "sci", "politics", "religion"]
    coarse = dict(zip(feats["label"].names, (feats["coarse_label"].names[c] for c in D.NEWSGROUPS_COARSE_OF)))
    assert coarse["alt.atheism"] == "religion"          # label 0
    assert coarse["comp.graphics"] == "comp"            # label 1
    assert coarse["comp.windows.x"] == "comp"           # label 5
    assert coarse["misc.forsale"] == "forsale"          # label 6
    assert coarse["rec.sport.hockey"] == "rec"          # label 10
    assert coarse["sci.space"] == "sci"                 # label 14
    assert coarse["soc.religion.christian"] == "religion"  # label 15
    assert coarse["talk.politics.misc"] == "politics"   # label 18
    assert coarse["talk.religion.misc"] == "religion"   # label 19
    for ds in news.values():
        assert (np.asarray(D.NEWSGROUPS_COARSE_OF)[ds["label"]] == np.asarray(ds["coarse_label"])).all()


def test_newsgroups_cleaned_counts(news):
    # seed 003 (Yu & Kim 2022) reports train 8,765 / validation 2,192 / test 7,274: matched exactly
    assert _sizes(news) == {"train": 8765, "validation": 2192, "test": 7274}
    train_val = list(news["train"]["text"]) + list(news["validation"]["text"])
    assert len(set(train_val)) == len(train_val)                 # no duplicates
    assert not set(news["test"]["text"]) & set(train_val)        # test does not repeat train
    assert all(t and t == t.lower() and "  " not in t for t in news["test"]["text"])
    assert all(ch.isalnum() or ch == " " for ch in news["validation"][0]["text"])


def test_newsgroups_raw(data_root):
    raw = D.load("newsgroups20", data_root, clean_newsgroups=False)
    assert _sizes(raw) == {"train": 9051, "validation": 2263, "test": 7532}
    assert raw["test"][0]["text"].startswith("From: ")


def test_news_text_helpers():
    post = "From: a@b\nSubject: x\n\nIn article <1@c> b writes:\n> quoted\nHello, World!\n\n--\nsig"
    assert D.strip_news_parts(post).strip() == "Hello, World!"
    assert D.normalize_news_text("I'm  FINE,\n thanks!") == "im fine thanks"


# ---------------------------------------------------------------- QA

def test_xquad(xquad):
    assert _sizes(xquad) == {"validation": 1190}
    ds = xquad["validation"]
    assert list(ds.features) == ["id", "title", "context", "question", "answers"]
    assert ds.features == D.QA_FEATURES
    for ex in ds:
        assert len(ex["answers"]["text"]) == 1
        for text, start in zip(ex["answers"]["text"], ex["answers"]["answer_start"]):
            assert ex["context"][start:start + len(text)] == text


def test_squad(data_root):
    sq = D.load("squad", data_root)
    assert _sizes(sq) == {"train": 87599, "validation": 10570}
    assert sq["validation"].features == D.QA_FEATURES  # answer_start_ambiguous dropped
    ex = sq["validation"][0]
    assert ex["id"] == "56be4db0acb8001400a502ec"
    assert ex["answers"]["text"] == ["Denver Broncos"] * 3


# ---------------------------------------------------------------- subsets and stats

def _with_row(dsd):
    return datasets.DatasetDict({s: ds.add_column("row", list(range(len(ds)))) for s, ds in dsd.items()})


def test_stratified_subset(fin):
    dsd = _with_row(fin)
    sub = D.stratified_subset(dsd, {"train": 101, "validation": 50, "test": None}, seed=7)
    assert _sizes(sub) == {"train": 101, "validation": 50, "test": 485}
    assert sub["test"]["row"] == dsd["test"]["row"]
    for split, n in (("train", 101), ("validation", 50)):
        rows = sub[split]["row"]
        assert rows == sorted(rows) and len(set(rows)) == n          # original order kept
        full = np.bincount(dsd[split]["label"], minlength=3)
        got = np.bincount(sub[split]["label"], minlength=3)
        assert got.sum() == n and np.all(np.abs(got - n * full / full.sum()) < 1)
    assert sub["train"].features["label"] == fin["train"].features["label"]
    again = D.stratified_subset(dsd, {"train": 101, "validation": 50}, seed=7)
    other = D.stratified_subset(dsd, {"train": 101, "validation": 50}, seed=8)
    assert again["train"]["row"] == sub["train"]["row"]
    assert other["train"]["row"] != sub["train"]["row"]
    whole = D.stratified_subset(dsd, {"train": len(dsd["train"])}, seed=1)
    assert whole["train"]["row"] == dsd["train"]["row"]


def test_stratified_subset_errors(fin):
    with pytest.raises(ValueError, match=r"'validation'.*485 rows"):
        D.stratified_subset(fin, {"validation": 486}, seed=0)
    with pytest.raises(ValueError, match="unknown split"):
        D.stratified_subset(fin, {"dev": 10}, seed=0)
    # a split the dataset lacks is fine when its size is None (QA sets have no test split)
    assert _sizes(D.stratified_subset(fin, {"dev": None}, seed=0)) == _sizes(fin)


def test_stratified_subset_qa(xquad):
    sub = D.stratified_subset(xquad, {"validation": 100, "test": None}, seed=3)
    assert len(sub["validation"]) == 100
    assert sub["validation"]["id"] == D.stratified_subset(xquad, {"validation": 100}, seed=3)["validation"]["id"]
    assert sub["validation"]["id"] != D.stratified_subset(xquad, {"validation": 100}, seed=4)["validation"]["id"]


def test_length_stats_words(fin):
    st = D.length_stats(fin)
    assert st["split"].tolist() == ["train", "validation", "test"]
    assert st["n"].tolist() == [3876, 485, 485]
    assert (st["words_max"] >= st["words_p95"]).all() and (st["words_p95"] >= st["words_median"]).all()
    assert not any(c.startswith("tokens_") for c in st.columns)
    one = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["a b c", "d"]})})
    row = D.length_stats(one).iloc[0]
    assert (row["n"], row["words_mean"], row["words_max"]) == (2, 2.0, 3.0)


def test_length_stats_tokens(fin, data_root):
    folder = data_root / "bert" / "bert-base-uncased"
    if not (folder / "vocab.txt").is_file():
        pytest.skip("no bert-base-uncased vocabulary in the data folder")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    one = datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["Hello world!"]})})
    assert D.length_stats(one, tok).iloc[0]["tokens_max"] == 3  # hello, world, ! (no [CLS]/[SEP])
    st = D.length_stats(datasets.DatasetDict({"validation": fin["validation"]}), tok).iloc[0]
    assert st["tokens_mean"] > st["words_mean"]


def test_hub_fallback_builds_the_same_splits(monkeypatch, tmp_path, fin, data_root):
    # an online user: no local files, the hub answers in its own layout (`sentence`, split `train`)
    raw = pd.read_parquet(data_root / "financial_phrasebank" / "sentences_50agree.parquet")
    hub = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"sentence": raw["text"].tolist(), "label": raw["label"].tolist()})})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    got = D.load("fin_sentiment", tmp_path)
    assert calls == [("takala/financial_phrasebank", "sentences_50agree")]
    for split in fin:
        assert list(got[split]["text"]) == list(fin[split]["text"])
        assert got[split].features == fin[split].features
