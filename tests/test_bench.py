"""`kdstudy bench` end to end on a tiny QA model and three questions (torch and ONNX Runtime)."""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib import cli
from kdlib.core import squad
from kdlib.inference import bench
from kdlib.studies.edge import qa

CONTEXT = "The Broncos defeated the Panthers 24 to 10 at Levi's Stadium in Santa Clara, California, in February 2016."
QUESTIONS = [
    {"id": "a", "question": "Who won?", "context": CONTEXT, "answers": {"text": ["The Broncos", "Broncos"]}},
    {"id": "b", "question": "Where was the game?", "context": CONTEXT, "answers": {"text": ["Levi's Stadium"]}},
    {"id": "c", "question": "When?", "context": CONTEXT, "answers": {"text": ["February 2016"]}},
]
SETTINGS = {"max_length": 24, "stride": 8, "n_best": 5, "max_answer_length": 10}


@pytest.fixture(scope="module")
def tiny_qa_dir(tmp_path_factory):
    """A 1-layer BERT QA model with MiniLM's vocabulary, saved with its tokenizer as step 06 saves models."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering

    from kdlib.core.models import load_tokenizer, save_model

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny_qa") / "model"
    save_model(BertForQuestionAnswering(config).eval(), load_tokenizer("minilm"), folder)
    return folder


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "questions.json"
    path.write_text(json.dumps({"settings": SETTINGS, "questions": QUESTIONS}))
    return path


def test_bench_torch_end_to_end(tiny_qa_dir, data_file, tmp_path):
    out = tmp_path / "result.json"
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--data", str(data_file), "--profile", "pi5",
                     "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["runtime"], r["precision"], r["batch_size"], r["questions"]) == ("torch", "fp32", 1, 3)
    assert r["windows"] >= 3 and r["settings"] == SETTINGS
    assert r["threads"] >= 1 and r["total_seconds"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0
    assert r["peak_rss_mb"] > 0 and r["model_size_mb"] > 0 and r["machine"]["cpu"]
    # The scores are those of the recorded predictions under the official metric.
    refs = {q["id"]: q["answers"]["text"] for q in QUESTIONS}
    assert r["f1"] == pytest.approx(squad.squad_scores(r["predictions"], refs)["f1"])
    assert set(r["predictions"]) == {"a", "b", "c"}


def test_bench_answers_like_the_batched_predictor(tiny_qa_dir, data_file, tmp_path):
    """The standalone benchmark (batch 1, its own windows) and the notebook's batched path agree."""
    import datasets
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    r = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qa_dir)
    tk = squad.window_tokenizer(tokenizer, SETTINGS["max_length"], SETTINGS["stride"])
    windows = squad.encode_windows(tk, [q["question"] for q in QUESTIONS], [q["context"] for q in QUESTIONS])
    ds = datasets.Dataset.from_dict({k: [getattr(w, k) for w in windows] for k in squad.TOKEN_INPUTS})
    edge = type("Edge", (), {"n_best": SETTINGS["n_best"], "max_answer_length": SETTINGS["max_answer_length"]})
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_qa_dir)
    assert qa.predict_answers(model, tokenizer, ds, windows, QUESTIONS, edge, batch_size=2) == r["predictions"]


def test_bench_onnx_file_gives_the_torch_answers(tiny_qa_dir, data_file, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from kdlib.inference import runtimes

    runner = runtimes.prepare(AutoModelForQuestionAnswering.from_pretrained(tiny_qa_dir), "onnxruntime", "fp32",
                              tiny_qa_dir / "onnx", threads=1)
    onnx_file = runner.files[0]
    r_onnx = bench.run_benchmark(onnx_file, data_file, warmup=0)  # tokenizer.json found one level up
    r_torch = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0)
    assert r_onnx["runtime"] == "onnxruntime"
    assert r_onnx["predictions"] == r_torch["predictions"]


def test_bench_imports_no_analysis_stack():
    code = ("import sys, kdlib.inference.bench, kdlib.cli; "
            "print(sorted(m for m in ('pandas', 'seaborn', 'matplotlib', 'datasets', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_rejects_bad_data(tmp_path, tiny_qa_dir):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "x", "question": "?"}]))
    with pytest.raises(ValueError, match="question 0 has no context, answers"):
        bench.load_questions(bad)
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--data", str(bad), "--out", str(tmp_path / "o.json")]) == 2


def test_bench_reads_jsonl_and_the_official_squad_layout(tmp_path):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text("\n".join(json.dumps(q) for q in QUESTIONS))
    assert [q["id"] for q in bench.load_questions(jsonl)[0]] == ["a", "b", "c"]
    official = {"data": [{"title": "t", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": "a", "question": "Who won?", "answers": [{"text": "Broncos", "answer_start": 4}]}]}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(official))
    questions, settings = bench.load_questions(path)
    assert questions[0]["answers"]["text"] == ["Broncos"] and settings == bench.DEFAULT_SETTINGS


def test_bench_says_which_routes_it_cannot_run():
    assert bench.unsupported("torch", "fp32") is None and bench.unsupported("onnxruntime", "int8_static") is None
    assert "quantised torch model" in bench.unsupported("torch", "int8")
    assert "kdstudy bench runs" in bench.unsupported("torch_compile", "fp32")


def test_step_06_takes_in_a_device_result(tiny_qa_dir, data_file, tmp_path):
    from kdlib.studies.edge import step as edge

    folder = tmp_path / "device_results"
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--data", str(data_file), "--out",
                     str(folder / "pi5.json")]) == 0
    rows = edge.device_results(folder)
    result = json.loads((folder / "pi5.json").read_text())
    assert len(rows) == 1 and rows[0]["file"] == "pi5.json"
    assert (rows[0]["runtime"], rows[0]["f1"], rows[0]["total_seconds"]) == ("torch", result["f1"], result["total_seconds"])
    assert rows[0]["device"] == (result["machine"]["board"] or result["machine"]["cpu"])


def test_bench_times_a_baseline_in_turn(tiny_qa_dir, data_file, tmp_path):
    """--baseline: both models answer every question in the same run; the speed-up is their time ratio, and
    each model's answers are those it gives when timed alone (same model twice: same answers)."""
    out = tmp_path / "pair.json"
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--baseline", str(tiny_qa_dir), "--data",
                     str(data_file), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    alone = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0)
    b = r["baseline"]
    assert (b["runtime"], b["precision"], b["f1"], b["exact_match"]) == ("torch", "fp32", alone["f1"], alone["exact_match"])
    assert r["f1"] == alone["f1"] and r["predictions"] == alone["predictions"]
    assert r["speedup_vs_baseline"] == pytest.approx(b["total_seconds"] / r["total_seconds"])
    assert b["p95_ms"] >= b["p50_ms"] > 0


def test_bench_times_more_models_in_the_same_turns_with_also(tiny_qa_dir, data_file, tmp_path):
    """--also: a third model answers in the same turns, with its own speed-up over the baseline, which answers
    once for both; its answers are those it gives alone. Without a baseline it is refused in one line."""
    out = tmp_path / "three.json"
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--baseline", str(tiny_qa_dir), "--also",
                     str(tiny_qa_dir), "torch", "fp32", "--data", str(data_file), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    (a,) = r["also"]
    alone = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0)
    assert (a["runtime"], a["precision"], a["f1"], a["exact_match"]) == ("torch", "fp32", alone["f1"], alone["exact_match"])
    assert a["speedup_vs_baseline"] == pytest.approx(r["baseline"]["total_seconds"] / a["total_seconds"])
    assert r["speedup_vs_baseline"] == pytest.approx(r["baseline"]["total_seconds"] / r["total_seconds"])
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--also", str(tiny_qa_dir), "torch", "fp32",
                     "--data", str(data_file), "--out", str(tmp_path / "o.json")]) == 2


def test_in_turn_each_timed_question_follows_an_untimed_pass_of_the_same_model(monkeypatch, tiny_qa_dir, data_file):
    """Paired runs warm each model with one untimed window before each of its timed questions, so no model is
    timed right after the other's call; the calls run in blocks of one model: its warm pass, then its windows."""
    calls = []
    real = bench.load_model

    def counting(model, runtime, precision, threads):
        forward, *rest = real(model, runtime, precision, threads)
        tag = "baseline" if len(calls) and calls[-1] == "load" else "model"
        calls.append("load")
        return (lambda inputs, tag=tag: calls.append(tag) or forward(inputs)), *rest

    monkeypatch.setattr(bench, "load_model", counting)
    r = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0, baseline=tiny_qa_dir)
    timed = [c for c in calls if c != "load"]
    blocks = [len(list(g)) for _, g in itertools.groupby(timed)]
    questions, settings = bench.load_questions(data_file)
    tk = squad.window_tokenizer(bench._tokenizer_file(Path(tiny_qa_dir), None), settings["max_length"],
                             settings["stride"])
    windows = squad.encode_windows(tk, [q["question"] for q in questions], [q["context"] for q in questions])
    lengths = len({len(w.input_ids) for w in windows})
    # per model: one untimed pass per distinct window length, one warm pass per question, its timed windows
    assert timed.count("model") == timed.count("baseline") == lengths + r["questions"] + r["windows"]
    assert min(blocks) >= 2  # never a lone call: each timed window comes after the same model's warm pass


def test_every_window_length_runs_once_untimed_before_the_timed_questions(monkeypatch, tiny_qa_dir, data_file):
    """OpenVINO compiles per input length on first sight: before timing, each model sees every length once."""
    lengths = []
    real = bench.load_model

    def recording(model, runtime, precision, threads):
        forward, *rest = real(model, runtime, precision, threads)
        return (lambda inputs: lengths.append(inputs["input_ids"].shape[1]) or forward(inputs)), *rest

    monkeypatch.setattr(bench, "load_model", recording)
    r = bench.run_benchmark(tiny_qa_dir, data_file, warmup=0)
    distinct = set(lengths)
    assert len(lengths) == len(distinct) + r["windows"]  # the warm-up, then the timed windows
    assert sorted(lengths[:len(distinct)]) == sorted(distinct)  # one call per length, all of them first


def test_bench_refuses_a_baseline_it_cannot_run(tiny_qa_dir, data_file, tmp_path):
    assert cli.main(["bench", "--model", str(tiny_qa_dir), "--baseline", str(tmp_path / "missing"), "--data",
                     str(data_file), "--out", str(tmp_path / "o.json")]) == 2
