"""Parameter files: every shipped profile validates, and each kind of mistake gets one clear message."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdlib.config import ParamsError, deep_merge, load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_shipped_profiles_validate(profile):
    cfg = load_params(REPO / "params" / f"{profile}.yaml")
    assert cfg.profile == profile
    assert len(cfg.fingerprint()) == 16


def test_quick_profile_is_the_offline_default():
    cfg = load_params(REPO / "params" / "quick.yaml")
    assert cfg.teacher.model == "minilm" and cfg.data.dataset == "fin_sentiment"


def write(tmp_path, raw) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


BASE = {"profile": "t", "data": {"dataset": "fin_sentiment"}, "teacher": {"model": "minilm"}}


@pytest.mark.parametrize("change, message", [
    ({"data": {"datset": "x"}}, "data.datset: unknown key"),
    ({"teachr": {}}, "teachr: unknown key"),
    ({"teacher": {"epochs": "three"}}, "teacher.epochs: expected a number, got 'three'"),
    ({"data": {"max_length": 64.5}}, "data.max_length: expected an integer"),
    ({"data": {"max_length": 4}}, "data.max_length: 4 is below the minimum 8"),
    ({"distill": {"alpha": 1.5}}, "distill.alpha: 1.5 is above the maximum 1.0"),
    ({"student": {"init": "every-other"}}, "student.init: 'every-other' is not one of"),
    ({"compute": {"bf16": "yes"}}, "compute.bf16: expected true or false"),
    ({"data": {"dataset": "imdb"}}, "data.dataset: unknown dataset 'imdb'"),
    ({"teacher": {"model": "minlm"}}, "teacher.model: unknown model 'minlm'"),
    ({"benchmark": {"precisions": ["int4"]}}, "benchmark.precisions: 'int4' is not one of fp32, bf16"),
    ({"profile": "a b"}, "profile: 'a b' must be letters"),
])
def test_each_mistake_names_the_file_and_key(tmp_path, change, message):
    path = write(tmp_path, deep_merge(BASE, change))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_missing_profile_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="profile: required key is missing"):
        load_params(write(tmp_path, {"seed": 1}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="no such parameter file"):
        load_params(tmp_path / "nope.yaml")


def test_overrides_merge_and_change_the_fingerprint(tmp_path):
    path = write(tmp_path, BASE)
    a = load_params(path)
    b = load_params(path, overrides={"distill": {"alpha": 0.9}})
    assert b.distill.alpha == 0.9 and b.distill.temperature == a.distill.temperature
    assert a.fingerprint() != b.fingerprint()
    assert load_params(path).fingerprint() == a.fingerprint()


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    path = write(tmp_path, deep_merge(BASE, {"teacher": {"epochs": -1}}))
    proc = subprocess.run([sys.executable, "-m", "kdlib.cli", "run", "--params", str(path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {path}: teacher.epochs: -1.0 is below the minimum 0.01"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
