"""A profile's classification task, whatever its source: a dataset of the study's registry (`core.data`), a
user's file or folder (`core.datafile`, resolved to an absolute path when the profile is loaded), or a hub
dataset id. Every step reads its data through `task_data` (or `prepare` and `tokenize`)."""
from __future__ import annotations

import datasets

from kdlib.core import data, datafile


def source_kind(dataset: str) -> str:
    """"registry", "file" (a file or folder) or "hub" (anything else: a hub dataset id)."""
    if dataset in data.DATASETS:
        return "registry"
    return "file" if datafile.looks_like_path(dataset) else "hub"


def load(data_params) -> datasets.DatasetDict:
    """The whole dataset of `data_params` (config.DataParams), with train, validation and test splits."""
    kind = source_kind(data_params.dataset)
    if kind == "registry":
        return data.load(data_params.dataset)
    columns = dict(text_column=data_params.text_column, label_column=data_params.label_column,
                   text_pair_column=data_params.text_pair_column)
    if kind == "file":
        return datafile.read(data_params.dataset, encoding=data_params.encoding,
                             drop_empty=bool(data_params.drop_empty), **columns)
    return datafile.read_hub(data_params.dataset, drop_empty=bool(data_params.drop_empty), **columns)


def prepare(data_params, seed: int) -> datasets.DatasetDict:
    """The profile's dataset, subset (stratified, seeded) to its sizes; None keeps the whole split."""
    sizes = {"train": data_params.train_size, "validation": data_params.validation_size,
             "test": data_params.test_size}
    return data.stratified_subset(load(data_params), sizes, seed=seed)


def tokenize(dsd: datasets.DatasetDict, tokenizer, max_length: int) -> datasets.DatasetDict:
    """Token ids and label (truncated, not padded); sentence pairs are encoded as pairs."""
    if "text_pair" not in dsd["train"].column_names:
        return data.tokenize(dsd, tokenizer, max_length)

    def encode(batch):
        return tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=max_length)

    return dsd.map(encode, batched=True, desc="tokenize",
                   remove_columns=[c for c in dsd["train"].column_names if c != "label"])


def task_data(cfg, tokenizer):
    """The profile's task data: the subset (prepare), its label names, and its tokenised splits."""
    dsd = prepare(cfg.data, cfg.seed)
    return dsd, data.label_names(dsd), tokenize(dsd, tokenizer, cfg.data.max_length)
