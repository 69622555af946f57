"""`kdstudy export` and `kdlib.inference.export.load_artifact`: a tiny classifier exported, reloaded and compared with PyTorch."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdlib.cli import main
from kdlib.inference import export as ex
from kdlib.inference import runtimes as rt

TEXTS = ["Profit rose by a third in the quarter.", "The company cut its forecast.", "Shares were flat.",
         "Operating loss widened to EUR 3 million from EUR 1 million a year earlier, the company said today.", "ok"]


@pytest.fixture(scope="module")
def classifier_dir(tiny_teacher_dir, tmp_path_factory):
    """The tiny teacher with its classifier scaled up, so its logits (not near-ties) decide the class."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(40.0)
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def exported(classifier_dir, tmp_path_factory):
    """export(runtime, precision) -> (folder, manifest), each exported once for the module."""
    done = {}

    def get(runtime, precision):
        skip_if_refused(runtime, precision)
        if (runtime, precision) not in done:
            out = tmp_path_factory.mktemp(f"{runtime}-{precision}")
            done[runtime, precision] = out, ex.export(classifier_dir, runtime, precision, out)
        return done[runtime, precision]

    return get


def torch_logits(folder, texts, max_length=ex.DEFAULT_MAX_LENGTH):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True, max_length=max_length,
                                                  return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.numpy()


def skip_if_refused(runtime, precision):
    reason = rt.refusal(*ex.route_of(runtime, precision))
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("runtime,precision,tolerance", [("onnx", "fp32", 1e-4), ("openvino", "fp32", 1e-4),
                                                         ("onnx", "int8", None)])
def test_exported_artifact_reloads_and_agrees_with_torch(classifier_dir, exported, runtime, precision, tolerance):
    out, manifest = exported(runtime, precision)
    expected_files = {"onnx": {"model.onnx"}, "openvino": {"model.xml", "model.bin"}}[runtime]
    assert set(manifest["files"]) == expected_files and all((out / f).is_file() for f in expected_files)
    assert (out / "tokenizer.json").is_file() and json.loads((out / ex.MANIFEST).read_text()) == manifest
    assert manifest["route"]["runtime"] == ex.RUNTIMES[runtime] and manifest["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert manifest["accuracy"] is None and "no --params" in manifest["accuracy_note"]
    assert manifest["size_mb"] == pytest.approx(sum(manifest["files"].values()), abs=0.01)

    predictor = ex.load_artifact(out)
    got, expected = predictor.logits(TEXTS, batch_size=2), torch_logits(classifier_dir, TEXTS)
    assert got.shape == expected.shape == (len(TEXTS), 3)
    if tolerance is not None:
        np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)
    else:  # int8: loose, and the same class on most texts
        assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()
        assert (got.argmax(-1) == expected.argmax(-1)).sum() >= len(TEXTS) - 1
    assert predictor.predict(TEXTS) == [predictor.labels[i] for i in got.argmax(-1)]


def test_int8_artifact_is_smaller(exported):
    fp32, int8 = exported("onnx", "fp32")[1], exported("onnx", "int8")[1]
    assert int8["size_mb"] < fp32["size_mb"] and int8["int8_format"] == rt.int8_format()


def test_artifact_predicts_without_torch(exported):
    """What a deployment needs: the runtime, tokenizers and numpy; torch and transformers never imported."""
    out = exported("onnx", "fp32")[0]
    code = (f"import sys; from kdlib.inference.artifact import load_artifact; p = load_artifact({str(out)!r}); "
            f"print(p.predict({TEXTS!r})); print('torch' in sys.modules, 'transformers' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[-1] == "False False"
    assert eval(lines[-2]) == ex.load_artifact(out).predict(TEXTS)


def test_cli_writes_an_artifact(classifier_dir, tmp_path, capsys):
    skip_if_refused("onnx", "int8")
    assert main(["export", "--model", str(classifier_dir), "--runtime", "onnx", "--precision", "int8",
                 "--out", str(tmp_path / "a")]) == 0
    assert "onnxruntime/int8" in capsys.readouterr().out and (tmp_path / "a" / "model.onnx").is_file()


@pytest.mark.parametrize("args,words", [
    (["--model", "no/such/folder", "--runtime", "onnx", "--precision", "fp32"], "not found"),
    (["--runtime", "tensorrt", "--precision", "fp32"], "unknown runtime 'tensorrt'"),
    (["--runtime", "onnx", "--precision", "int4"], "unknown precision 'int4'"),
    (["--runtime", "openvino", "--precision", "int8"], "pass --params"),
    (["--runtime", "onnx", "--precision", "int8_static"], "pass --params"),
])
def test_cli_errors_are_one_line(classifier_dir, tmp_path, capsys, args, words):
    if "--model" not in args:
        args = ["--model", str(classifier_dir), *args]
    if "openvino" in args and rt.refusal("openvino", "int8_static"):
        pytest.skip(rt.refusal("openvino", "int8_static"))
    assert main(["export", *args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / ex.MANIFEST).exists()


def test_every_route_of_an_exportable_runtime_exports_under_the_name_04s_tables_print():
    """04 may pick any route of ONNX Runtime or OpenVINO as the one to ship; `kdstudy export` takes the
    precision as the tables name it (and `int8` on OpenVINO, whose only int8 is the static one)."""
    from kdlib.studies.compare.ship import EXPORTABLE

    for name, runtime in ex.RUNTIMES.items():
        for precision in rt.ROUTES[runtime]:
            assert ex.route_of(name, precision) == (runtime, precision)
            assert EXPORTABLE[(runtime, precision)] == (name, precision)
    assert ex.route_of("openvino", "int8") == ("openvino", "int8_static")


def test_load_artifact_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="not an exported artifact"):
        ex.load_artifact(tmp_path)


@pytest.mark.slow  # prepares the smoke profile's data
@pytest.mark.parametrize("runtime,precision", [("onnx", "fp32"), ("openvino", "int8")])
def test_accuracy_is_measured_on_the_profile_test_split(data_dir, tiny_teacher_dir, tmp_path, runtime, precision):
    """With --params the manifest carries the accuracy of the artifact on the profile's test split; for fp32
    it is PyTorch's accuracy on the same texts (the same predictions)."""
    skip_if_refused(runtime, precision)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdlib.core.data import label_names
    from kdlib.core.task import prepare
    from kdlib.pipeline.config import load_params

    cfg = load_params("params/smoke.yaml")
    dsd = prepare(cfg.data, cfg.seed)
    names = label_names(dsd)
    # The tiny teacher with the dataset's label names (an untrained head: the accuracy is whatever it is).
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_teacher_dir, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(folder)

    manifest = ex.export(folder, runtime, precision, tmp_path / "artifact", load_params("params/smoke.yaml"))
    accuracy = manifest["accuracy"]
    assert accuracy["n"] == len(dsd["test"]) and accuracy["dataset"] == cfg.data.dataset
    assert 0 <= accuracy["accuracy"] <= 1 and "test split" in manifest["accuracy_note"]
    if precision == "fp32":
        logits = torch_logits(folder, list(dsd["test"]["text"]), cfg.data.max_length)
        assert accuracy["accuracy"] == pytest.approx(float(np.mean(logits.argmax(-1) == np.asarray(dsd["test"]["label"]))))
    else:
        assert manifest["calibration_examples"] == min(cfg.compare.calibration_size, len(dsd["train"]))
