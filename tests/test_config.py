"""Parameter files: every shipped profile validates, and each kind of mistake gets one clear message."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kdlib.pipeline.config import ParamsError, deep_merge, load_params

REPO = Path(__file__).resolve().parents[1]
# Profiles whose models are all local (the minilm alias) load as `kdstudy check` loads them. `full` names hub
# models: its schema is validated with the look-up skipped (check_models=False), and offline it is refused.
OFFLINE_PROFILES = ("smoke", "quick", "korean", "full-shapes")


@pytest.fixture
def hub_off(tmp_path, monkeypatch):
    """The hub off and an empty Hugging Face cache: the outcome does not depend on this machine's cache."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("profile", ["smoke", "quick", "full", "korean", "full-shapes"])
def test_shipped_profiles_validate(profile, hub_off, data_dir):
    cfg = load_params(REPO / "params" / f"{profile}.yaml", check_models=profile in OFFLINE_PROFILES)
    assert cfg.profile == profile
    assert len(cfg.fingerprint()) == 16


def test_full_is_refused_offline_at_once(hub_off):
    path = REPO / "params" / "full.yaml"
    start = time.perf_counter()
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert time.perf_counter() - start < 5  # no retries against an unreachable hub
    assert str(err.value).startswith(f"{path}: teacher.model: 'bert-base-uncased' is not an alias (minilm), not a "
                                     f"local folder and not in the Hugging Face cache, and the hub is off "
                                     f"(HF_HUB_OFFLINE=1)")


# What makes full-shapes small and offline: its sizes, epochs, seeds and repeats, and random weights in place of
# the hub's models. Every other key (the architecture, the grid, the routes, the losses) is full's.
SMALL_AND_OFFLINE = {
    "profile", "data.train_size", "data.validation_size", "data.test_size",
    "teacher.model", "teacher.epochs", "distill.epochs", "grid.epochs", "grid.general_distill.epochs",
    "grid.general_distill.max_texts", "compare.recovery_epochs", "compare.calibration_size",
    "hetero.encoder", "hetero.train_size", "hetero.validation_size", "hetero.test_size", "hetero.curve_epochs",
    "hetero.seeds", "hetero.epochs", "hetero.patience", "hetero.transformer.train_size",
    "hetero.transformer.test_size", "hetero.transformer.seeds", "hetero.transformer.epochs",
    "edge.teacher", "edge.train_size", "edge.eval_size", "edge.epochs", "edge.select_size",
    "benchmark.warmup", "benchmark.repeats", "verdicts.seeds",
}


def _flat(d: dict, where: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{where}.{key}" if where else key
        out.update(_flat(value, name) if isinstance(value, dict) else {name: value})
    return out


def test_full_shapes_is_full_made_small_and_offline(hub_off, data_dir):
    full = _flat(load_params(REPO / "params" / "full.yaml", check_models=False).to_dict())
    shapes_cfg = load_params(REPO / "params" / "full-shapes.yaml")  # its models are found offline
    shapes = _flat(shapes_cfg.to_dict())
    different = {k for k in full.keys() | shapes.keys() if full.get(k) != shapes.get(k)}
    assert different <= SMALL_AND_OFFLINE, sorted(different - SMALL_AND_OFFLINE)
    assert {"teacher.model", "hetero.encoder", "edge.teacher", "data.train_size"} <= different
    for key in ("teacher.model", "hetero.encoder", "edge.teacher"):
        assert shapes[key] == "random:bert-base-uncased" and full[key] == "bert-base-uncased"
    assert {(s.layers, s.ffn) for s in shapes_cfg.grid.students} == {(l, f) for l in (1, 3, 6) for f in (192, 768, 3072)}


def test_full_passes_the_check_where_the_hugging_face_cache_holds_its_models(tmp_path, monkeypatch, data_dir):
    """Offline with bert-base-uncased in the Hugging Face cache (a GPU machine that downloaded it once),
    `kdstudy check --params params/full.yaml` passes: the cache here holds the config the project ships."""
    import shutil

    import huggingface_hub

    root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = root / "models--bert-base-uncased" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (root / "models--bert-base-uncased" / "refs").mkdir()
    (root / "models--bert-base-uncased" / "refs" / "main").write_text("abc123")
    shutil.copy(data_dir / "bert" / "bert-base-uncased" / "config.json", snapshot)
    cfg = load_params(REPO / "params" / "full.yaml")
    assert cfg.teacher.model == "bert-base-uncased" and cfg.edge.teacher == "bert-base-uncased"


def test_quick_profile_is_the_offline_default():
    cfg = load_params(REPO / "params" / "quick.yaml")
    assert cfg.teacher.model == "minilm" and cfg.data.dataset == "fin_sentiment"
    # seed 000's {1,3,6} x {192,768,3072} at the same ratios to MiniLM's hidden size 384
    assert {(s.layers, s.ffn) for s in cfg.grid.students} == {(l, f) for l in (1, 2, 3) for f in (96, 384, 1536)}
    assert cfg.hetero.dataset == "newsgroups20" and cfg.edge.dataset == "squad"


def test_full_grid_is_seed_000s_and_korean_is_quick_in_korean():
    full = load_params(REPO / "params" / "full.yaml", check_models=False)
    assert {(s.layers, s.ffn) for s in full.grid.students} == {(l, f) for l in (1, 3, 6) for f in (192, 768, 3072)}
    korean, quick = (load_params(REPO / "params" / f"{p}.yaml").to_dict() for p in ("korean", "quick"))
    assert korean["data"]["dataset"] == "fin_sentiment_ko"
    different = {k for k in quick if quick[k] != korean[k]}
    assert different == {"profile", "data"}  # the same steps and sizes, on the Korean data


def test_every_profile_fills_every_section():
    import dataclasses

    from kdlib.pipeline.config import StudyParams

    # sections, not the optional list of steps (unset: all)
    sections = {f.name for f in dataclasses.fields(StudyParams)} - {"profile", "seed", "source", "steps"}
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
    ({"teacher": {"model": "minlm"}}, "teacher.model: 'minlm' is not an alias (minilm), not a local folder"),
    ({"teacher": {"model": "no-such-org/no-such-model-xyz"}},
     "teacher.model: 'no-such-org/no-such-model-xyz' is not an alias (minilm), not a local folder and not in the "
     "Hugging Face cache, and the hub is off (HF_HUB_OFFLINE=1)"),
    ({"edge": {"teacher": "../nowhere"}}, "edge.teacher: '../nowhere' is not an alias (minilm), not a local folder "
                                          "and not a valid hub id; a relative folder is read from"),
    # lists that a step reads the first or the largest item of, or builds a table from, must not be empty
    ({"grid": {"students": []}}, "grid.students: must not be empty"),
    ({"edge": {"students": []}}, "edge.students: must not be empty"),
    ({"benchmark": {"batch_sizes": []}}, "benchmark.batch_sizes: must not be empty"),
    ({"benchmark": {"precisions": []}}, "benchmark.precisions: must not be empty"),
    ({"compare": {"head_prune_fractions": []}}, "compare.head_prune_fractions: must not be empty"),
    ({"compare": {"svd_ranks": []}}, "compare.svd_ranks: must not be empty"),
    ({"hetero": {"alphas": []}}, "hetero.alphas: must not be empty"),
    ({"hetero": {"temperatures": []}}, "hetero.temperatures: must not be empty"),
    ({"hetero": {"conventions": []}}, "hetero.conventions: must not be empty"),
    ({"verdicts": {"seeds": []}}, "verdicts.seeds: must not be empty"),
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
def test_each_mistake_names_the_file_and_key(tmp_path, hub_off, change, message):
    path = write(tmp_path, deep_merge(BASE, change))
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value).startswith(f"{path}: {message}")
    assert "\n" not in str(err.value)


def test_lists_that_may_be_empty(tmp_path):
    """Empty means none here: no general distillation, no extra routes, a linear dense student."""
    cfg = load_params(write(tmp_path, deep_merge(BASE, {
        "grid": {"general_distill": {"students": []}}, "compare": {"runtimes": [], "magnitude_sparsities": []},
        "edge": {"runtimes": []}, "hetero": {"encode_routes": [], "student_hidden": []}})))
    assert cfg.grid.general_distill.students == [] and cfg.hetero.student_hidden == []


def save_tiny(folder: Path, config) -> Path:
    """A tiny model saved like a hub model (config.json and weights)."""
    from transformers import AutoModel

    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def test_a_relative_folder_is_read_from_the_parameter_files_folder(tmp_path, monkeypatch, tiny_bert_config):
    teacher = save_tiny(tmp_path / "my_teacher", tiny_bert_config())
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "p.yaml"
    path.write_text(yaml.safe_dump(deep_merge(BASE, {"teacher": {"model": "../my_teacher"},
                                                     "edge": {"teacher": "../my_teacher"}})))
    for cwd in (tmp_path, tmp_path / "sub", REPO / "notebooks"):  # the kernel runs in notebooks/
        monkeypatch.chdir(cwd)
        cfg = load_params(path)
        assert cfg.teacher.model == cfg.edge.teacher == str(teacher.resolve())
        assert cfg.hetero.encoder == "minilm"  # an alias stays an alias
    # Not beside the file, only beside the working directory: not a folder, so a hub id, refused offline.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path.write_text(yaml.safe_dump(deep_merge(BASE, {"teacher": {"model": "my_teacher"}})))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError, match=f"a relative folder is read from {tmp_path / 'sub'}$"):
        load_params(path)


def test_a_teacher_that_cannot_make_students_is_refused(tmp_path, tiny_bert_config):
    from transformers import DistilBertConfig

    save_tiny(tmp_path / "distil", DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64))
    folder = (tmp_path / "distil").resolve()
    refusal = "is a distilbert; students are built from teachers whose layers are laid out as BERT's"
    families = "bert, roberta, xlm-roberta, electra"
    for key, change, kinds in (("teacher.model", {"teacher": {"model": "distil"}}, families),
                               ("edge.teacher", {"edge": {"teacher": "distil"}}, families),
                               ("hetero.encoder", {"hetero": {"encoder": "distil"}}, "bert")):  # 05's transformer
        path = write(tmp_path, deep_merge(BASE, change))
        with pytest.raises(ParamsError) as err:
            load_params(path)
        assert str(err.value) == f"{path}: {key}: '{folder}' {refusal} ({kinds})"
    # Without 05's transformer student, the encoder only embeds: any model that loads will do.
    cfg = load_params(write(tmp_path, deep_merge(BASE, {"hetero": {"encoder": "distil",
                                                                   "transformer": {"enabled": False}}})))
    assert cfg.hetero.encoder == str(folder)


def test_reading_a_profile_without_running_it_skips_the_look_up(tmp_path, hub_off, tiny_bert_config):
    """check_models=False (the report, schema tests): no model is looked up, the path rule still applies."""
    save_tiny(tmp_path / "teacher", tiny_bert_config())
    path = write(tmp_path, deep_merge(BASE, {"teacher": {"model": "teacher"}, "edge": {"teacher": "no-such/model"}}))
    with pytest.raises(ParamsError, match="edge.teacher: 'no-such/model'"):
        load_params(path)
    cfg = load_params(path, check_models=False)
    assert cfg.teacher.model == str((tmp_path / "teacher").resolve()) and cfg.edge.teacher == "no-such/model"
    with pytest.raises(ParamsError, match="grid.students: must not be empty"):  # the schema is still checked
        load_params(path, overrides={"grid": {"students": []}}, check_models=False)


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
