"""A deployed classifier (a folder `kdstudy export` wrote) as a `Predictor`: texts -> label names or logits.

It needs only numpy, the `tokenizers` library and the folder's runtime (ONNX Runtime or OpenVINO): no torch,
no transformers. Each runtime is imported when a folder that uses it is loaded, since only one is installed
on a small device.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tokenizers import Tokenizer

from kdlib.inference.openvino_calls import openvino_call

MANIFEST = "manifest.json"


@dataclass
class Predictor:
    """Texts in, logits or label names out, through an exported artifact."""

    manifest: dict[str, Any]
    tokenizer: Any = field(repr=False)
    run: Callable[[dict[str, Any]], Any] = field(repr=False)  # int64 feeds -> logits

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    def logits(self, texts: list[str], batch_size: int = 32, pairs: list[str] | None = None):
        """Logits per text (with `pairs`, per sentence pair: texts[i] with pairs[i])."""
        if isinstance(texts, str):
            texts, pairs = [texts], None if pairs is None else [pairs]
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        out = []
        for start in range(0, len(inputs), batch_size):
            encodings = self.tokenizer.encode_batch(inputs[start:start + batch_size])
            fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
            feeds = {name: np.asarray([getattr(e, fields[name]) for e in encodings], dtype=np.int64)
                     for name in self.manifest["input_names"]}
            out.append(np.asarray(self.run(feeds), dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, texts: list[str], batch_size: int = 32, pairs: list[str] | None = None) -> list[str]:
        """The label name of each text (or sentence pair)."""
        return [self.labels[i] for i in self.logits(texts, batch_size, pairs).argmax(axis=-1)]

    __call__ = predict


def load_artifact(folder: str | Path, threads: int | None = None) -> Predictor:
    """A Predictor for an artifact folder written by `export` (ValueError if it is not one)."""


    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise ValueError(f"{folder} is not an exported artifact (no {MANIFEST} there)")
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(manifest["max_length"])
    tokenizer.enable_padding(pad_id=manifest["pad_token_id"], pad_token=manifest["pad_token"])
    logits_name = manifest["output_names"][0]
    if manifest["route"]["runtime"] == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])

        def run(feeds):
            return session.run([logits_name], feeds)[0]
    else:
        import openvino as ov

        call = openvino_call(ov.Core(), folder / "model.xml", manifest["route"]["precision"], threads,
                             [logits_name])

        def run(feeds):
            return call(feeds)[logits_name]
    return Predictor(manifest, tokenizer, run)
