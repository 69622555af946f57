"""A user's own data: every format and split layout read into the study's schema, and every kind of bad data
stopped by `kdstudy check` with one line, before anything trains."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdlib.cli import main
from kdlib.core import datafile, task
from kdlib.pipeline.config import load_params

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("bad", "good", "meh")


def frame(n_per_class: int = 12, text: str = "review", label: str = "verdict") -> pd.DataFrame:
    rows = [(f"{c} text number {i}", c) for c in CLASSES for i in range(n_per_class)]
    return pd.DataFrame(rows, columns=[text, label])


def profile(tmp_path: Path, dataset: str, **data) -> Path:
    """A profile on the user's data, its dataset relative to the profile's folder."""
    raw = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    raw["profile"] = "own"
    raw["data"] = {"dataset": dataset, "text_column": "review", "label_column": "verdict", "max_length": 32, **data}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_csv_without_splits_is_split_811_by_class_with_names_sorted(tmp_path):
    frame(20).to_csv(tmp_path / "d.csv", index=False)
    dsd = datafile.read(tmp_path / "d.csv", "review", "verdict")
    assert {s: len(d) for s, d in dsd.items()} == {"train": 48, "validation": 6, "test": 6}
    assert dsd["train"].features["label"].names == list(CLASSES)
    for split in dsd.values():  # stratified: every class in every split
        assert set(split["label"]) == {0, 1, 2}
    again = datafile.read(tmp_path / "d.csv", "review", "verdict")
    assert again["test"]["text"] == dsd["test"]["text"]  # the fixed split seed: the same rows every time


@pytest.mark.parametrize("suffix", ["tsv", "jsonl", "parquet"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    f = frame(20)
    f.to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / f"d.{suffix}"
    {"tsv": lambda: f.to_csv(path, sep="\t", index=False), "jsonl": lambda: f.to_json(path, orient="records", lines=True),
     "parquet": lambda: f.to_parquet(path)}[suffix]()
    a, b = datafile.read(tmp_path / "d.csv", "review", "verdict"), datafile.read(path, "review", "verdict")
    assert all(a[s]["text"] == b[s]["text"] and a[s]["label"] == b[s]["label"] for s in a)


def test_integer_labels_are_ordered_as_numbers(tmp_path):
    f = frame(20)
    f["verdict"] = f["verdict"].map({"bad": 10, "good": 2, "meh": 1})
    f.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    assert datafile.read(tmp_path / "d.jsonl", "review", "verdict")["train"].features["label"].names == ["1", "2", "10"]


def test_a_folder_with_train_and_test_gets_validation_carved_from_train(tmp_path):
    (tmp_path / "d").mkdir()
    frame(18).to_csv(tmp_path / "d" / "train.csv", index=False)
    frame(4).to_csv(tmp_path / "d" / "test.csv", index=False)
    dsd = datafile.read(tmp_path / "d", "review", "verdict")
    assert {s: len(d) for s, d in dsd.items()} == {"train": 48, "validation": 6, "test": 12}
    assert not set(dsd["train"]["text"]) & set(dsd["validation"]["text"])


def test_sentence_pairs_are_tokenised_as_pairs(tmp_path, tiny_tokenizer):
    f = frame(20)
    f["hypothesis"] = "a second sentence"
    f.to_csv(tmp_path / "d.csv", index=False)
    dsd = datafile.read(tmp_path / "d.csv", "review", "verdict", text_pair_column="hypothesis")
    tok = task.tokenize(dsd, tiny_tokenizer, 32)
    sep = tiny_tokenizer.sep_token_id
    assert tok["train"][0]["input_ids"].count(sep) == 2  # [CLS] a [SEP] b [SEP]


def test_duplicates_and_texts_shared_between_splits_are_counted_not_dropped(tmp_path):
    (tmp_path / "d").mkdir()
    train = frame(18)
    pd.concat([train, train.head(1), train.head(1)]).to_csv(tmp_path / "d" / "train.csv", index=False)
    test = frame(4).assign(review=lambda f: "held out " + f["review"])
    pd.concat([test, train.iloc[[5]]]).to_csv(tmp_path / "d" / "test.csv", index=False)
    dsd = datafile.read(tmp_path / "d", "review", "verdict")
    o = datafile.overlaps(dsd).set_index("split")
    # row 0 three times: wherever the carve put its copies, two of them repeat a text seen before
    assert o.loc["train", "duplicate_rows"] + o.loc["validation", "duplicate_rows"] \
        + o.loc["train & validation", "shared_texts"] == 2
    assert o.loc["train & test", "shared_texts"] + o.loc["validation & test", "shared_texts"] == 1
    assert sum(len(d) for d in dsd.values()) == 54 + 2 + 13  # nothing dropped


def test_the_profile_keys_its_runs_by_the_files_content(tmp_path):
    frame(20).to_csv(tmp_path / "d.csv", index=False)
    first = load_params(profile(tmp_path, "d.csv"))
    assert first.data.dataset == str(tmp_path / "d.csv")  # read from the profile's folder
    frame(21).to_csv(tmp_path / "d.csv", index=False)
    second = load_params(profile(tmp_path, "d.csv"))
    assert first.data.content and first.data.content != second.data.content
    assert first.fingerprint(["data"]) != second.fingerprint(["data"])


def test_a_registered_dataset_records_no_file_options():
    cfg = load_params(REPO / "params" / "quick.yaml", check_models=False)
    assert set(cfg.to_dict()["data"]) == {"dataset", "max_length", "train_size", "validation_size", "test_size"}


BAD = {
    "encoding": (lambda p: p.write_bytes("review,verdict\n".encode() + b"caf\xe9 ok,good\n" * 40),
                 "not valid utf-8 at line 2, byte 0xe9 (offset 18); set data.encoding"),
    "missing column": (lambda p: frame(12, text="body").to_csv(p, index=False),
                       "no column 'review' (columns: body, verdict); set data.text_column"),
    "empty texts": (lambda p: frame(12).assign(review=lambda f: f["review"].mask(f.index.isin([3, 7]), "")
                                               ).to_csv(p, index=False),
                    "2 of 36 rows have an empty 'review' (data rows 4, 8, counted from 1 after the header)"),
    "empty labels": (lambda p: frame(12).assign(verdict=lambda f: f["verdict"].mask(f.index == 0, "")
                                                ).to_csv(p, index=False),
                     "1 of 36 rows have an empty 'verdict' (data rows 1,"),
    "single class": (lambda p: frame(12).assign(verdict="good").to_csv(p, index=False),
                     "a single class ('good'); a classifier needs at least two"),
    "too few to stratify": (lambda p: pd.concat([frame(12), pd.DataFrame({"review": ["x", "y"], "verdict": "rare"})]
                                                ).to_csv(p, index=False),
                            "too few rows to split by class: 'rare' (2); each class needs at least 10"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_stops_check_with_one_line_before_anything_trains(tmp_path, case, capsys, reports_dir):
    write, message = BAD[case]
    write(tmp_path / "d.csv")
    assert main(["check", "--params", str(profile(tmp_path, "d.csv"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert f"{tmp_path / 'd.csv'}" in err  # names the file
    # and kdstudy run refuses the same way, before a step runs
    assert main(["run", "--params", str(profile(tmp_path, "d.csv"))]) == 2
    assert message in capsys.readouterr().err
    assert not (reports_dir / "own").exists() or not any((reports_dir / "own").glob("*/metrics.json"))


def test_drop_empty_drops_and_says_how_many(tmp_path):
    BAD["empty texts"][0](tmp_path / "d.csv")
    with pytest.warns(UserWarning, match="dropped 2 of 36 rows"):
        dsd = datafile.read(tmp_path / "d.csv", "review", "verdict", drop_empty=True)
    assert sum(len(d) for d in dsd.values()) == 34


def test_a_missing_file_and_options_on_a_registered_dataset_are_refused(tmp_path, capsys):
    assert main(["check", "--params", str(profile(tmp_path, "nope.csv"))]) == 2
    assert f"no file or folder {tmp_path / 'nope.csv'}" in capsys.readouterr().err
    raw = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    raw["data"]["text_column"] = "x"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    assert main(["check", "--params", str(tmp_path / "r.yaml")]) == 2
    assert "data.text_column: only for a file or hub dataset" in capsys.readouterr().err


def test_a_hub_dataset_id_takes_the_same_column_options(monkeypatch):
    import datasets

    names = datasets.ClassLabel(names=["neg", "pos", "neu"])
    split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"body": [f"t{i}" for i in range(n)], "stars": [i % 3 for i in range(n)]},
        features=datasets.Features({"body": datasets.Value("string"), "stars": names}))
    monkeypatch.setattr(datasets, "load_dataset", lambda name: datasets.DatasetDict(train=split(45), test=split(9)))
    dsd = datafile.read_hub("someone/reviews", "body", "stars")
    assert dsd["train"].features["label"].names == ["neg", "neu", "pos"]  # the hub's names, sorted
    assert {s: len(d) for s, d in dsd.items()} == {"train": 40, "validation": 5, "test": 9}


def test_init_scales_the_students_to_the_teacher_and_max_length_to_the_texts():
    import numpy as np

    from kdlib.pipeline.scaffold import choose_max_length, grid_students

    # MiniLM (6 layers, FFN 1536): the quick profile's grid exactly
    assert grid_students(6, 1536) == [{"layers": d, "ffn": f} for d in (1, 2, 3) for f in (96, 384, 1536)]
    assert {s["layers"] for s in grid_students(12, 3072)} == {2, 4, 6}
    assert choose_max_length(np.array([10] * 95 + [70] * 5)) == 32  # at least 32
    assert choose_max_length(np.arange(1, 101)) == 96  # the 95th percentile (95.05), rounded up to 16s
    assert choose_max_length(np.array([2000] * 10)) == 512


def test_init_refuses_bad_data_and_an_existing_profile_in_one_line(tmp_path, capsys):
    frame(12).assign(verdict="good").to_csv(tmp_path / "d.csv", index=False)
    args = ["init", "--data", str(tmp_path / "d.csv"), "--text-column", "review", "--label-column", "verdict",
            "--params-dir", str(tmp_path / "params")]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "params" / "d.yaml").exists()
    (tmp_path / "params").mkdir(exist_ok=True)
    (tmp_path / "params" / "d.yaml").write_text("mine")
    frame(12).to_csv(tmp_path / "d.csv", index=False)
    assert main(args) == 2
    assert "exists already" in capsys.readouterr().err
    assert (tmp_path / "params" / "d.yaml").read_text() == "mine"
