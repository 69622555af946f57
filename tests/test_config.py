"""Parameter files: every shipped profile validates, and each kind of mistake gets one clear message."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdlib.pipeline.config import ParamsError, deep_merge, load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("profile", ["smoke", "quick", "full", "korean"])
def test_shipped_profiles_validate(profile):
    cfg = load_params(REPO / "params" / f"{profile}.yaml")
    assert cfg.profile == profile
    assert len(cfg.fingerprint()) == 16


def test_quick_profile_is_the_offline_default():
    cfg = load_params(REPO / "params" / "quick.yaml")
    assert cfg.teacher.model == "minilm" and cfg.data.dataset == "fin_sentiment"
    # seed 000's {1,3,6} x {192,768,3072} at the same ratios to MiniLM's hidden size 384
    assert {(s.layers, s.ffn) for s in cfg.grid.students} == {(l, f) for l in (1, 2, 3) for f in (96, 384, 1536)}
    assert cfg.hetero.dataset == "newsgroups20" and cfg.edge.dataset == "squad"


def test_full_grid_is_seed_000s_and_korean_is_quick_in_korean():
    full = load_params(REPO / "params" / "full.yaml")
    assert {(s.layers, s.ffn) for s in full.grid.students} == {(l, f) for l in (1, 3, 6) for f in (192, 768, 3072)}
    korean, quick = (load_params(REPO / "params" / f"{p}.yaml").to_dict() for p in ("korean", "quick"))
    assert korean["data"]["dataset"] == "fin_sentiment_ko"
    different = {k for k in quick if quick[k] != korean[k]}
    assert different == {"profile", "data"}  # the same steps and sizes, on the Korean data


def test_every_profile_fills_every_section():
    import dataclasses

    from kdlib.pipeline.config import StudyParams

    sections = {f.name for f in dataclasses.fields(StudyParams)} - {"profile", "seed", "source"}
    for profile in ("smoke", "quick", "full", "korean"):
        raw = yaml.safe_load((REPO / "params" / f"{profile}.yaml").read_text())
        assert sections <= set(raw), f"{profile} lacks {sections - set(raw)}"


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
    ({"distill": {"student": {"init": "every-other"}}}, "distill.student.init: 'every-other' is not one of"),
    ({"distill": {"loss": "mse"}}, "distill.loss: unknown loss 'mse'"),
    ({"compute": {"precision": "fp16"}}, "compute.precision: 'fp16' is not one of"),
    ({"compute": {"bf16": True}}, "compute.bf16: unknown key"),
    ({"data": {"dataset": "imdb"}}, "data.dataset: unknown dataset 'imdb'"),
    ({"teacher": {"model": "minlm"}}, "teacher.model: unknown model 'minlm'"),
    ({"benchmark": {"precisions": ["fp32", "int4"]}}, "benchmark.precisions[1]: 'int4' is not one of"),
    ({"benchmark": {"runtimes": ["tensorrt"]}}, "benchmark.runtimes[0]: 'tensorrt' is not one of"),
    # lists of sections are validated item by item, naming the item
    ({"grid": {"students": [{"layers": 1, "ffn": 96}, {"layers": 2, "ffn": 0}]}},
     "grid.students[1].ffn: 0 is below the minimum 1"),
    ({"grid": {"students": [{"layers": 1, "fnn": 96}]}}, "grid.students[0].fnn: unknown key"),
    ({"grid": {"students": [{"layers": "two", "ffn": 96}]}}, "grid.students[0].layers: expected an integer"),
    ({"grid": {"students": {"layers": 1}}}, "grid.students: expected a list"),
    ({"grid": {"students": [[1, 96]]}}, "grid.students[0]: expected a mapping"),
    ({"grid": {"students": [{"layers": 1, "ffn": 96}, {"layers": 1, "ffn": 96}]}},
     "grid.students[1]: (1, 96) appears twice"),
    ({"grid": {"students": [{"layers": 1, "ffn": 96}], "general_distill": {"students": [{"layers": 3, "ffn": 96}]}}},
     "grid.general_distill.students[0]: (3, 96) is not a student of grid.students"),
    ({"hetero": {"dataset": "newsgroups"}}, "hetero.dataset: unknown dataset 'newsgroups'"),
    ({"hetero": {"alphas": [0.3, 1.3]}}, "hetero.alphas[1]: 1.3 is above the maximum 1.0"),
    ({"hetero": {"conventions": ["textbrewer"]}}, "hetero.conventions[0]: 'textbrewer' is not one of ours, paper"),
    ({"edge": {"students": [{"layers": 0, "ffn": 96}]}}, "edge.students[0].layers: 0 is below the minimum 1"),
    ({"edge": {"stride": 256, "max_length": 256}}, "edge.stride: 256 must be below edge.max_length"),
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


def test_a_section_fingerprint_changes_only_with_its_section(tmp_path):
    path = write(tmp_path, BASE)
    a = load_params(path)
    b = load_params(path, overrides={"grid": {"epochs": 7}})
    assert a.fingerprint(["grid"]) != b.fingerprint(["grid"])
    for other in ("data", "teacher", "distill", "hetero", "edge", "benchmark"):
        assert a.fingerprint([other]) == b.fingerprint([other])


def test_cli_prints_one_line_and_no_traceback(tmp_path):
    path = write(tmp_path, deep_merge(BASE, {"teacher": {"epochs": -1}}))
    proc = subprocess.run([sys.executable, "-m", "kdlib.cli", "run", "--params", str(path)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {path}: teacher.epochs: -1.0 is below the minimum 0.01"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
