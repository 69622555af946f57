"""Shared fixtures: offline settings, the data folder, a tiny BERT teacher, and a scratch reports folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Everything the tests use is local: never wait on the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch.compile's kernel cache, private to this test session: a file half-written by an interrupted run
# elsewhere (the default cache is shared under /tmp) can never break a test.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="kd-inductor-"))

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """$KD_DATA_DIR, else ../shared/data beside the repository (where CI and developers have it)."""
    env = os.environ.get("KD_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    return next((p for p in candidates if (p / "financial_phrasebank").is_dir()), None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("the study's data folder is not here: set KD_DATA_DIR (see README)")
    os.environ["KD_DATA_DIR"] = str(found)
    return found


@pytest.fixture
def reports_dir(tmp_path, monkeypatch) -> Path:
    """Send every report and cache of a test into its own temporary folder."""
    monkeypatch.setenv("KD_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("KD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "reports"


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> Path:
    """A small random BERT (2 layers, hidden 64) with MiniLM's tokenizer, saved like a hub model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kdlib.core.models import resolve_model

    folder = tmp_path_factory.mktemp("tiny_teacher")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """MiniLM's tokenizer (shipped locally): it pads the batches of the synthetic tiny models below, whose
    token ids stay under 1000 (pad id 0)."""
    from transformers import AutoTokenizer

    from kdlib.core.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm"))


def _tiny_bert_config(**changes):
    from transformers import BertConfig

    kwargs = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertConfig(**{**kwargs, **changes})


@pytest.fixture(scope="session")
def tiny_bert_config():
    """Makes the config of a 2-layer BERT of hidden 32 over 1000 token ids, without dropout (so losses are
    deterministic); keyword arguments change it."""
    return _tiny_bert_config


@pytest.fixture
def tiny_qa_teacher():
    """A random tiny BERT for extractive QA (start and end logits per token)."""
    import torch
    from transformers import BertForQuestionAnswering

    torch.manual_seed(1)
    return BertForQuestionAnswering(_tiny_bert_config()).eval()
