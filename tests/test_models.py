"""Teacher loading, student construction and parameter counts."""
from __future__ import annotations

import shutil
import types

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from kdlib.core import models


def tiny_bert(layers=4, ffn=64, hidden=32, vocab=100, labels=3, seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=ffn, max_position_embeddings=40, num_labels=labels)
    return BertForSequenceClassification(cfg).eval()


def bert_param_count(vocab, pos, hidden, layers, ffn, labels, types=2):
    """Parameters of a BERT classifier, by hand: embeddings, layers, pooler, classifier."""
    embeddings = vocab * hidden + pos * hidden + types * hidden + 2 * hidden  # + LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden                   # q, k, v, out + LayerNorm
    feed_forward = hidden * ffn + ffn + ffn * hidden + hidden + 2 * hidden    # in, out + LayerNorm
    pooler = hidden * hidden + hidden
    classifier = hidden * labels + labels
    return embeddings + layers * (attention + feed_forward) + pooler + classifier


def test_distilbert_layer_choice_and_others():
    assert models.select_teacher_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's layers
    assert models.select_teacher_layers(12, 3) == [0, 6, 11]
    assert models.select_teacher_layers(6, 3) == [0, 3, 5]
    assert models.select_teacher_layers(12, 1) == [0]
    assert models.select_teacher_layers(12, 12) == list(range(12))
    assert models.select_teacher_layers(12, 4, "first") == [0, 1, 2, 3]
    assert models.select_teacher_layers(6, 3, "stride") == [0, 2, 4]  # one layer out of two, from the first
    assert models.select_teacher_layers(12, 6, "stride") == [0, 2, 4, 6, 8, 10]
    assert models.select_teacher_layers(6, 1, "stride") == [0]
    r = models.select_teacher_layers(12, 4, "random", seed=1)
    assert r == sorted(r) and len(set(r)) == 4 and r == models.select_teacher_layers(12, 4, "random", seed=1)
    assert models.select_teacher_layers(12, 4, "scratch") == []
    with pytest.raises(ValueError):
        models.select_teacher_layers(6, 7)
    with pytest.raises(ValueError):
        models.select_teacher_layers(6, 3, "every-other")


def test_parameter_count_matches_hand_count():
    m = tiny_bert(layers=4, ffn=64)
    counts = models.count_parameters(m)
    assert counts["total"] == bert_param_count(100, 40, 32, 4, 64, 3)
    assert counts["total"] == sum(p.numel() for p in m.parameters())
    assert counts["classifier"] == 32 * 3 + 3 and counts["pooler"] == 32 * 32 + 32
    assert counts["other"] == 0


def test_seed000_table4_per_layer_and_per_ffn_increments():
    """Seed 000's Table 4 grows by exactly one BERT-base layer (FFN 192) from 1 to 3 layers, and by the FFN
    difference from 192 to 768: our count reproduces both increments."""
    one = bert_param_count(30000, 300, 768, 1, 192, 3)
    three = bert_param_count(30000, 300, 768, 3, 192, 3)
    wider = bert_param_count(30000, 300, 768, 1, 768, 3)
    assert three - one == 31_878_000 - 26_555_376
    assert wider - one == 27_440_688 - 26_555_376


def test_student_copies_selected_layers_and_embeddings():
    teacher = tiny_bert(layers=4)
    student = models.make_student(teacher, 2, init="alternate")
    assert student.config.num_hidden_layers == 2 and student.config.kd_teacher_layers == [0, 3]
    sd_t, sd_s = teacher.state_dict(), student.state_dict()
    for name, value in sd_s.items():
        if ".layer." in name:
            i = int(name.split(".layer.")[1].split(".")[0])
            t_name = name.replace(f".layer.{i}.", f".layer.{[0, 3][i]}.")
            assert torch.equal(value, sd_t[t_name]), name
        else:
            assert torch.equal(value, sd_t[name]), name  # embeddings, pooler, classifier


def test_same_depth_student_equals_teacher():
    teacher = tiny_bert(layers=3)
    student = models.make_student(teacher, 3).eval()
    x = torch.randint(0, 100, (2, 9))
    assert torch.equal(teacher(input_ids=x).logits, student(input_ids=x).logits)


def test_narrower_ffn_keeps_first_neurons():
    teacher = tiny_bert(layers=2, ffn=64)
    student = models.make_student(teacher, 2, intermediate_size=16)
    t, s = teacher.bert.encoder.layer[1], student.bert.encoder.layer[1]
    assert s.intermediate.dense.weight.shape == (16, 32)
    assert torch.equal(s.intermediate.dense.weight, t.intermediate.dense.weight[:16])
    assert torch.equal(s.intermediate.dense.bias, t.intermediate.dense.bias[:16])
    assert torch.equal(s.output.dense.weight, t.output.dense.weight[:, :16])
    assert torch.equal(s.output.dense.bias, t.output.dense.bias)
    assert models.count_parameters(student)["total"] == bert_param_count(100, 40, 32, 2, 16, 3)


def test_wider_ffn_computes_the_teacher_function_at_init():
    teacher = tiny_bert(layers=2, ffn=64)
    student = models.make_student(teacher, 2, intermediate_size=128).eval()
    s = student.bert.encoder.layer[0]
    assert torch.count_nonzero(s.output.dense.weight[:, 64:]) == 0  # the extra neurons start silent
    assert torch.count_nonzero(s.intermediate.dense.weight[64:]) > 0  # but can learn
    x = torch.randint(0, 100, (3, 7))
    torch.testing.assert_close(student(input_ids=x).logits, teacher(input_ids=x).logits, rtol=0, atol=1e-6)


def test_scratch_student_is_random_but_seeded():
    teacher = tiny_bert(layers=2)
    a = models.make_student(teacher, 1, init="scratch", seed=3)
    b = models.make_student(teacher, 1, init="scratch", seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)


def tiny_qa_bert(layers=4, seed=0):
    from transformers import BertForQuestionAnswering

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=40)
    return BertForQuestionAnswering(cfg).eval()


def test_qa_student_copies_qa_outputs():
    teacher = tiny_qa_bert(layers=4)
    student = models.make_student(teacher, 2).eval()
    assert type(student) is type(teacher) and student.config.kd_teacher_layers == [0, 3]
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    assert torch.equal(student.qa_outputs.bias, teacher.qa_outputs.bias)
    assert student.bert.encoder.layer[1].attention.self.query.weight.equal(
        teacher.bert.encoder.layer[3].attention.self.query.weight)
    # same depth: the same function, start and end
    same = models.make_student(teacher, 4).eval()
    x = torch.randint(0, 100, (2, 9))
    a, b = teacher(input_ids=x), same(input_ids=x)
    assert torch.equal(a.start_logits, b.start_logits) and torch.equal(a.end_logits, b.end_logits)


def test_two_head_student_copies_both_heads():
    from kdlib.core.heads import BertForTwoHeadClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=40, num_labels=5, num_distill_labels=3)
    teacher = BertForTwoHeadClassification(cfg).eval()
    student = models.make_student(teacher, 1, intermediate_size=16).eval()
    assert type(student) is BertForTwoHeadClassification and student.config.num_distill_labels == 3
    for head in ("classifier", "distill_classifier"):
        for name, value in getattr(student, head).state_dict().items():
            assert torch.equal(value, getattr(teacher, head).state_dict()[name]), (head, name)
    assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
    same = models.make_student(teacher, 3).eval()
    x = torch.randint(0, 100, (2, 9))
    assert torch.equal(same(input_ids=x).distill_logits, teacher(input_ids=x).distill_logits)
    assert torch.equal(same(input_ids=x).logits, teacher(input_ids=x).logits)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, hub off; the returned function caches a config.json as the hub would."""
    import huggingface_hub

    root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def add(repo_id: str, config) -> None:
        repo = root / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc123")
        (repo / "snapshots" / "abc123").mkdir(parents=True)
        config.to_json_file(repo / "snapshots" / "abc123" / "config.json")

    return add


def test_aliases_and_folders_are_found_offline(hub_cache, tmp_path):
    assert models.check_model_name("minilm", models.STUDENT_MODEL_TYPES) is None
    folder = tmp_path / "teacher"
    tiny_bert(layers=1).save_pretrained(folder)
    assert models.check_model_name(str(folder), models.STUDENT_MODEL_TYPES) is None
    (tmp_path / "empty").mkdir()
    assert models.check_model_name(str(tmp_path / "empty")) == f"the folder {tmp_path / 'empty'} has no config.json"
    assert models.check_model_name("../nowhere") == ("'../nowhere' is not an alias (minilm), not a local folder "
                                                     "and not a valid hub id")


def test_a_hub_id_is_found_in_the_cache_else_refused_while_the_hub_is_off(hub_cache):
    hub_cache("bert-base-uncased", BertConfig())
    assert models.check_model_name("bert-base-uncased", models.STUDENT_MODEL_TYPES) is None
    for name in ("beomi/kcbert-base", "minlm"):
        assert models.check_model_name(name) == (
            f"{name!r} is not an alias (minilm), not a local folder and not in the Hugging Face cache, and the hub "
            f"is off (HF_HUB_OFFLINE=1)")


def test_a_distilbert_teacher_is_refused_with_its_reason(hub_cache):
    hub_cache("distilbert-base-uncased", DistilBertConfig())
    assert models.check_model_name("distilbert-base-uncased") is None  # loadable: an encoder is fine
    assert models.check_model_name("distilbert-base-uncased", models.STUDENT_MODEL_TYPES) == (
        "'distilbert-base-uncased' is a distilbert; students are built from teachers whose layers are laid out "
        "as BERT's (bert, roberta, xlm-roberta, electra)")
    with pytest.raises(ValueError, match="the teacher is a 'distilbert'"):  # what the check spares a run from
        models.make_student(DistilBertForSequenceClassification(
            DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64)), 1)


def tiny_family(kind: str, layers=4, seed=0):
    """A tiny random classifier of an encoder family (two labels, pad id 1 as RoBERTa's)."""
    from transformers import AutoConfig

    extra = {"embedding_size": 16} if kind == "electra" else {}  # ELECTRA's projection from a smaller embedding
    cfg = AutoConfig.for_model(kind, vocab_size=100, hidden_size=32, num_hidden_layers=layers,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=48,
                               num_labels=2, pad_token_id=1, **extra)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(cfg).eval()


def test_a_classifier_of_another_task_becomes_a_teacher_with_a_fresh_head(tmp_path):
    tiny_family("roberta").save_pretrained(tmp_path / "two-labels")  # fine-tuned elsewhere on 2 labels
    teacher = models.load_classifier(str(tmp_path / "two-labels"), ["a", "b", "c"])
    assert teacher.config.num_labels == 3 and teacher.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert teacher(input_ids=torch.randint(3, 100, (1, 5))).logits.shape == (1, 3)


@pytest.mark.parametrize("kind", models.STUDENT_MODEL_TYPES)
def test_every_family_makes_students_that_copy_the_teacher(kind):
    teacher = tiny_family(kind)
    assert teacher.config.model_type == kind
    student = models.make_student(teacher, 2, intermediate_size=16, init="alternate")
    assert type(student) is type(teacher) and student.config.kd_teacher_layers == [0, 3]
    sd_t = teacher.state_dict()
    for name, value in student.state_dict().items():
        if ".layer." not in name:  # embeddings (and ELECTRA's projection), pooler, head: the teacher's own
            assert torch.equal(value, sd_t[name]), name
    s, t = student.base_model.encoder.layer[1], teacher.base_model.encoder.layer[3]
    assert torch.equal(s.attention.self.query.weight, t.attention.self.query.weight)
    assert torch.equal(s.intermediate.dense.weight, t.intermediate.dense.weight[:16])
    # At full depth and width the student is the teacher.
    x = torch.randint(3, 100, (2, 9))
    same = models.make_student(teacher, 4).eval()
    assert torch.equal(same(input_ids=x).logits, teacher(input_ids=x).logits)
    assert models.count_parameters(student)["total"] < models.count_parameters(teacher)["total"]


def test_with_the_hub_on_an_uncached_id_is_asked_for_with_a_timeout(hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = []

    class FakeApi:
        def model_info(self, name, timeout):
            asked.append((name, timeout))
            if name == "org/roberta":
                return types.SimpleNamespace(config={"model_type": "roberta"})
            raise ConnectionError("Name or service not known\nmore detail")

    monkeypatch.setattr(models, "HfApi", FakeApi)
    assert models.check_model_name("org/roberta") is None
    assert models.check_model_name("org/roberta", models.STUDENT_MODEL_TYPES) is None  # a family students are built of
    assert "is a roberta; students are built" in models.check_model_name("org/roberta", ("bert",))
    assert models.check_model_name("no-such-org/no-such-model-xyz") == (
        "'no-such-org/no-such-model-xyz' is not an alias (minilm), not a local folder and not in the Hugging Face "
        "cache, and the hub lookup failed (ConnectionError: Name or service not known)")
    assert {t for _, t in asked} == {models.HUB_TIMEOUT_S} and models.HUB_TIMEOUT_S <= 10


def test_minilm_alias_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = models.load_classifier("minilm", ["negative", "neutral", "positive"])
    counts = models.count_parameters(teacher)
    # all-MiniLM-L6-v2: vocab 30,522, 512 positions, hidden 384, 6 layers, FFN 1,536; plus a 3-way head
    assert counts["total"] == bert_param_count(30522, 512, 384, 6, 1536, 3) == 22_714_371
    assert teacher.config.id2label[2] == "positive"
    student = models.make_student(teacher, 3)
    assert student.config.kd_teacher_layers == [0, 3, 5]
    assert models.count_parameters(student)["encoder"] == counts["encoder"] // 2


def test_save_model_writes_safetensors(tmp_path):
    m = tiny_bert(layers=1)
    folder = models.save_model(m, None, tmp_path / "m")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    again = BertForSequenceClassification.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_a_random_spec_builds_its_architecture_with_the_same_random_weights_each_time(tmp_path, monkeypatch):
    """"random:<folder>" (and "random:<name>" under $KD_DATA_DIR/bert/): the config's shape, random weights
    from seed 0, the tokenizer beside them; the same weights on every build, whatever the global RNG."""
    from transformers import BertTokenizer

    source = tmp_path / "tiny-config"
    BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
               max_position_embeddings=40).save_pretrained(source)
    (source / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmno"]))
    BertTokenizer(str(source / "vocab.txt")).save_pretrained(source)
    monkeypatch.setattr(models.tempfile, "gettempdir", lambda: str(tmp_path / "temp"))
    spec = f"random:{source}"
    assert models.check_model_name(spec, models.STUDENT_MODEL_TYPES) is None
    assert models.model_config(spec)["num_hidden_layers"] == 2
    torch.manual_seed(123)
    first = models.load_classifier(spec, ["a", "b", "c"])
    shutil.rmtree(models.resolve_model(spec))  # built again from nothing
    torch.manual_seed(123)
    again = models.load_classifier(spec, ["a", "b", "c"])
    assert first.config.num_hidden_layers == 2 and first.config.intermediate_size == 48
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert models.load_tokenizer(spec)("abc")["input_ids"][0] == 2  # [CLS]
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    (tmp_path / "bert").mkdir()
    shutil.copytree(source, tmp_path / "bert" / "tiny")
    assert models.model_config("random:tiny")["intermediate_size"] == 48
    assert "neither a folder" in models.check_model_name("random:absent")
