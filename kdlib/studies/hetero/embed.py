"""Document embeddings for seed 003's dense networks: every text encoded once, mean-pooled, cached.

Seed 003 feeds 768-d BERT document embeddings into small dense networks. Offline we use the MiniLM encoder
(384-d); `full` names bert-base-uncased. A document's embedding is the mean of the encoder's last hidden
states over its real tokens (attention mask), the pooling sentence-transformers uses for MiniLM.

Encoding ~18,000 newsgroup posts dominates step 05's time, so:
- texts are encoded sorted by length (batches of similar length carry little padding);
- the route (runtime, precision from kdlib.inference.runtimes) is picked after `probe_routes`: each candidate encodes
  the same few documents, and the first one, in the order given, whose embeddings stay within `MIN_COSINE` of
  torch fp32's is used (`choose_route` says why not the fastest). The route is part of the cache key, since int8 changes the embeddings a little;
- the result is a memoised unit (kdlib.pipeline.memo) keyed by the encoder, the texts, the length and the route:
  a rerun reads it back in a second.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel

from kdlib.core.models import load_tokenizer, resolve_model
from kdlib.inference import runtimes
from kdlib.inference.routes import RUNTIME_CODE
from kdlib.pipeline import memo
from kdlib.studies.train import source_fingerprint

# A route must give embeddings whose cosine with torch fp32's is at least this on every probed document.
MIN_COSINE = 0.995
REFERENCE_ROUTE = ("torch", "fp32")


class MeanPooledEncoder(nn.Module):
    """A BERT-style encoder whose one output, `embeddings`, is the attention-masked mean of its last hidden
    states. Takes the inputs kdlib.inference.runtimes routes feed (input_ids, attention_mask, token_type_ids)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config  # runtimes reads vocab_size from it

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return {"embeddings": (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)}


def load_encoder(name: str) -> MeanPooledEncoder:
    return MeanPooledEncoder(AutoModel.from_pretrained(resolve_model(name))).eval()


def texts_digest(texts) -> str:
    """A hash of a sequence of texts (order matters)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_key(encoder: str, texts, max_length: int, route: tuple[str, str]) -> str:
    """The embedding cache's key: the encoder (by its weights), the texts, the truncation length, the route and
    the code that runs it."""
    return memo.unit_key("embeddings", ["studies.hetero.embed", *RUNTIME_CODE], source_fingerprint(encoder),
                         texts_digest(texts), max_length, list(route))


def token_length_table(texts_by_split: dict[str, list[str]], tokenizer,
                       lengths=(64, 128, 192, 256, 384, 512)) -> pd.DataFrame:
    """Per split: percentiles of the token count (with [CLS]/[SEP]) and, per candidate max_length, the share of
    documents it truncates and the tokens per document it keeps (the encoding cost is about proportional)."""
    rows = []
    for split, texts in texts_by_split.items():
        n = np.array([len(ids) for ids in tokenizer(list(texts))["input_ids"]])
        for cut in lengths:
            rows.append({"split": split, "n": len(n), "median_tokens": float(np.median(n)),
                         "p90_tokens": float(np.percentile(n, 90)), "max_length": cut,
                         "truncated_share": float((n > cut).mean()),
                         "kept_tokens_per_doc": float(np.minimum(n, cut).mean())})
    return pd.DataFrame(rows)


def encode(runner, tokenizer, texts, max_length: int, batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Embeddings [len(texts), dim] (float32, in the order of `texts`), encoded longest first in batches padded
    to their own longest row."""

    ids = tokenizer(list(texts), truncation=True, max_length=max_length)
    order = np.argsort([-len(x) for x in ids["input_ids"]], kind="stable")
    out = None
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=f"encode ({runner.name})", disable=not progress, mininterval=5):
        rows = order[start:start + batch_size]
        # lengths rounded up to a multiple of 8: fewer distinct shapes for the runtimes to prepare kernels for
        batch = tokenizer.pad({k: [ids[k][i] for i in rows] for k in ids}, pad_to_multiple_of=8, return_tensors="np")
        inputs = {k: np.asarray(batch[k], dtype=np.int64) for k in runner.input_names}
        emb = runner(inputs)["embeddings"]
        if out is None:
            out = np.empty((len(order), emb.shape[1]), dtype=np.float32)
        out[rows] = emb
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def probe_routes(encoder: MeanPooledEncoder, tokenizer, texts, max_length: int, candidates,
                 batch_size: int = 32, threads: int | None = None, repeats: int = 2) -> pd.DataFrame:
    """Encode the same `texts` on every candidate (runtime, precision); one row per route: documents per second
    (the best of `repeats` passes after a warm-up pass), the smallest cosine with torch fp32's embeddings, and
    why a route was refused or failed."""
    rows, reference = [], None
    for runtime, precision in [REFERENCE_ROUTE, *[tuple(c) for c in candidates if tuple(c) != REFERENCE_ROUTE]]:
        row = {"runtime": runtime, "precision": precision, "docs_per_second": np.nan, "min_cosine": np.nan,
               "problem": runtimes.refusal(runtime, precision) or ""}
        if not row["problem"]:
            try:
                runner = runtimes.prepare(encoder, runtime, precision, None, threads)  # files in a temporary folder
                emb = encode(runner, tokenizer, texts, max_length, batch_size, progress=False)  # warm-up
                # the best of `repeats` passes: on a shared machine the slower ones measure the neighbours
                seconds = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    encode(runner, tokenizer, texts, max_length, batch_size, progress=False)
                    seconds.append(time.perf_counter() - t0)
                row["docs_per_second"] = len(texts) / min(seconds)
                reference = emb if reference is None else reference
                cos = (emb * reference).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(reference, axis=1))
                row["min_cosine"] = float(cos.min())
            except Exception as e:  # a route that fails here is reported, not fatal: torch fp32 remains
                row["problem"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        rows.append(row)
    return pd.DataFrame(rows)


def choose_route(probe: pd.DataFrame, min_cosine: float = MIN_COSINE) -> tuple[str, str]:
    """The first probed candidate, in the order given, that ran here and whose embeddings agree with torch
    fp32's (min cosine >= min_cosine); torch fp32 when none does. Not the fastest in the probe: two bf16 routes
    give slightly different embeddings, every number of step 05 follows them, and a probe of a few documents
    on a shared machine ranked two routes one way in one run and the other way in the next. The choice then
    depends only on what this CPU and installation can run."""
    candidates = probe[[(r, p) != REFERENCE_ROUTE for r, p in zip(probe["runtime"], probe["precision"])]]
    ok = candidates[(candidates["problem"] == "") & (candidates["min_cosine"] >= min_cosine)]
    if ok.empty:
        return REFERENCE_ROUTE
    return ok.iloc[0]["runtime"], ok.iloc[0]["precision"]


def embed_splits(texts_by_split: dict[str, list[str]], encoder_name: str, max_length: int, folder: Path,
                 candidates=(("torch", "bf16"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")),
                 probe_docs: int = 64, batch_size: int = 32) -> dict:
    """Embeddings of every split, cached. Returns {"embeddings": {split: array}, "route", "probe" (frame),
    "key", "seconds" (the encoding's, when it was built), "reused", "docs_per_second"}.

    The route probe is itself a unit (keyed by encoder, length, candidates and the CPU), so a rerun repeats
    neither the probe nor the encoding.
    """

    folder = Path(folder)
    tokenizer = load_tokenizer(encoder_name)
    all_texts = [t for texts in texts_by_split.values() for t in texts]
    # the probe documents: a spread of lengths, taken by a fixed stride over the texts
    stride = max(1, len(all_texts) // probe_docs)
    probe_texts = all_texts[::stride][:probe_docs]
    encoder = None

    def build_probe(unit: Path) -> dict:
        nonlocal encoder
        unit.mkdir(parents=True, exist_ok=True)
        encoder = encoder or load_encoder(encoder_name)
        frame = probe_routes(encoder, tokenizer, probe_texts, max_length, candidates, batch_size)
        return {"rows": frame.to_dict("records")}

    probe_key = memo.unit_key("encode_probe", ["studies.hetero.embed", *RUNTIME_CODE], encoder_name, max_length,
                              [list(c) for c in candidates], texts_digest(probe_texts), memo.machine())
    # one folder per key: profiles with different texts or lengths keep their own caches side by side
    probe = pd.DataFrame(memo.run_unit(folder / f"probe-{probe_key}", probe_key, build_probe)["rows"])
    route = choose_route(probe)

    def build(unit: Path) -> dict:
        nonlocal encoder
        unit.mkdir(parents=True, exist_ok=True)
        encoder = encoder or load_encoder(encoder_name)
        runner = runtimes.prepare(encoder, *route)  # an exported model lives in a temporary folder
        t0 = time.perf_counter()
        emb = encode(runner, tokenizer, all_texts, max_length, batch_size)
        seconds = time.perf_counter() - t0
        parts, start = {}, 0
        for split, texts in texts_by_split.items():
            parts[split] = np.ascontiguousarray(emb[start:start + len(texts)])
            start += len(texts)
        save_file(parts, str(unit / "embeddings.safetensors"))
        return {"seconds": seconds, "rows": len(all_texts), "dim": int(emb.shape[1])}

    key = cache_key(encoder_name, all_texts, max_length, route)
    unit = folder / f"embeddings-{key}"
    done = memo.run_unit(unit, key, build, params={"encoder": encoder_name, "max_length": max_length,
                                                   "route": list(route)}, files=("embeddings.safetensors",))
    loaded = load_file(str(unit / "embeddings.safetensors"))
    return {"embeddings": {s: loaded[s] for s in texts_by_split}, "route": "/".join(route), "probe": probe, "key": key,
            "seconds": done["seconds"], "reused": done["reused"], "docs_per_second": done["rows"] / done["seconds"]}
