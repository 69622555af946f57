"""Memoised units: a key that follows what decides the numbers, and reuse only of complete, readable units."""
from __future__ import annotations

import json

import pytest

from kdlib.core import fingerprint
from kdlib.pipeline import memo
from kdlib.pipeline.config import DistillParams


def digest(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return fingerprint._digest(fingerprint._module_tree(path, path.stat().st_mtime_ns))


CODE = '''"""Module docstring."""
def loss(x, t):
    """Docstring."""
    return x * t  # the product
'''


def test_code_digest_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    base = digest(tmp_path, "a.py", CODE)
    cosmetic = CODE.replace("# the product", "# a new comment").replace('"""Docstring."""', '"""Other words."""')
    assert digest(tmp_path, "b.py", cosmetic + "\n\n# trailing comment\n") == base
    assert digest(tmp_path, "c.py", CODE.replace("x * t", "x * t * t")) != base
    assert digest(tmp_path, "d.py", CODE.replace("x * t", "x / t")) != base


def test_unit_key_changes_with_a_deciding_parameter_only():
    a = memo.unit_key("distill", ["core.losses"], {"distill": DistillParams(), "seed": 1})
    assert a == memo.unit_key("distill", ["core.losses"], {"distill": DistillParams(), "seed": 1})
    assert a != memo.unit_key("distill", ["core.losses"], {"distill": DistillParams(temperature=4.0), "seed": 1})
    assert a != memo.unit_key("distill", ["core.losses"], {"distill": DistillParams(), "seed": 2})
    assert a != memo.unit_key("distill", ["core.losses", "core.distill"], {"distill": DistillParams(), "seed": 1})


def test_code_fingerprint_of_real_modules_is_stable_and_covers_packages():
    assert memo.code_fingerprint("core.losses", "core.distill") == memo.code_fingerprint("core.distill", "core.losses")
    # A package stands for every module in it: a runtime's own module is part of the runtimes' code.
    assert memo.code_fingerprint("inference.runtimes") != memo.code_fingerprint("inference.runtimes.base")
    with pytest.raises(FileNotFoundError, match="kdlib.no_such"):
        memo.code_fingerprint("no_such")


def _kept(x):
    """A unit's function: only its syntax tree counts."""
    return x + 1  # a comment


def test_a_function_is_keyed_by_its_syntax_tree_not_its_text(tmp_path, monkeypatch):
    """Units keyed by single functions (step 04's) change key with the function's code, not with a comment,
    a docstring or code beside it."""
    src = tmp_path / "unit_mod.py"
    body = 'def build(x):\n    """Doc."""\n    return x + 1  # one\n\n\ndef table():\n    return 1\n'
    src.write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("unit_mod")
    base = memo.code_fingerprint(mod.build)
    for edit in (body.replace("# one", "# two").replace("Doc.", "Other."), body.replace("return 1", "return 2")):
        src.write_text(edit)
        assert memo.code_fingerprint(mod.build) == base
    src.write_text(body.replace("x + 1", "x + 2"))
    assert memo.code_fingerprint(mod.build) != base
    assert memo.code_fingerprint(_kept) != memo.code_fingerprint(mod.build)


class Builder:
    def __init__(self):
        self.calls = 0

    def __call__(self, folder):
        self.calls += 1
        (folder / "weights.txt").parent.mkdir(parents=True, exist_ok=True)
        (folder / "weights.txt").write_text("w")
        return {"accuracy": 0.5}


def test_a_unit_is_built_once_then_reused(tmp_path):
    build = Builder()
    first = memo.run_unit(tmp_path / "u", "k1", build, params={"lr": 1}, files=["weights.txt"])
    again = memo.run_unit(tmp_path / "u", "k1", build, params={"lr": 1}, files=["weights.txt"])
    assert build.calls == 1 and first["reused"] is False and again["reused"] is True
    assert again["accuracy"] == 0.5 and again["params"] == {"lr": 1} and "cpu" in again["machine"]
    memo.run_unit(tmp_path / "u", "k2", build, files=["weights.txt"])  # another key: built again
    assert build.calls == 2


def test_a_built_unit_reads_as_a_reused_one_does(tmp_path):
    """The same tables cold and warm: a result is returned as it was recorded (keys in the recorded order,
    tuples as lists), not as the build made it."""
    def build(_folder):
        return {"z": 1, "a": (1, 2), "m": {"y": 0.25, "b": 2}}

    first = memo.run_unit(tmp_path / "u", "k", build)
    again = memo.run_unit(tmp_path / "u", "k", build)
    assert list(first) == list(again) and list(first["m"]) == list(again["m"]) == ["b", "y"]
    assert first["a"] == again["a"] == [1, 2]
    assert {k: v for k, v in first.items() if k != "reused"} == {k: v for k, v in again.items() if k != "reused"}


def test_a_unit_with_a_missing_file_is_rebuilt_with_a_warning(tmp_path):
    build = Builder()
    memo.run_unit(tmp_path / "u", "k", build, files=["weights.txt"])
    (tmp_path / "u" / "weights.txt").unlink()
    with pytest.warns(memo.UnitRebuilt, match="weights.txt missing"):
        memo.run_unit(tmp_path / "u", "k", build, files=["weights.txt"])
    assert build.calls == 2


def test_an_unreadable_result_is_rebuilt_with_a_warning(tmp_path):
    build = Builder()
    memo.run_unit(tmp_path / "u", "k", build)
    result = tmp_path / "u" / "result.json"
    result.write_text(result.read_text()[:10])  # truncated, as by a full disk
    with pytest.warns(memo.UnitRebuilt, match="unreadable"):
        done = memo.run_unit(tmp_path / "u", "k", build)
    assert build.calls == 2 and done["accuracy"] == 0.5
    assert json.loads(result.read_text())["key"] == "k"


def test_a_failed_build_records_nothing(tmp_path):
    def boom(folder):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        memo.run_unit(tmp_path / "u", "k", boom)
    assert not (tmp_path / "u" / "result.json").exists()


def test_a_unit_recorded_by_another_step_is_adopted_not_redone(tmp_path):
    build = Builder()
    memo.run_unit(tmp_path / "02" / "kd", "k", build, files=["weights.txt"])
    assert memo.adopt(tmp_path / "03" / "s", "other-key", [tmp_path / "02" / "kd"]) is None  # different work
    assert memo.adopt(tmp_path / "03" / "s", "k", [tmp_path / "02" / "kd"], files=["weights.txt"]) == tmp_path / "02" / "kd"
    done = memo.run_unit(tmp_path / "03" / "s", "k", build, files=["weights.txt"])
    assert build.calls == 1 and done["reused"] is True and (tmp_path / "03" / "s" / "weights.txt").exists()
    assert memo.adopt(tmp_path / "03" / "s", "k", [tmp_path / "02" / "kd"]) is None  # already there


def test_a_verdict_seed_copies_the_run_a_step_holds_under_its_key(tmp_path):
    """A verdict's seed that is the profile's own seed: the run 02 recorded under the same key, and the model
    it saved, are copied into the verdict's folder instead of trained again; a run of another key is not."""
    from kdlib.studies import train

    step, verdict = tmp_path / "02_distill", tmp_path / "verdicts" / "02_distill_seed42"
    memo.run_unit(step / "runs" / "kd_cached", "same-key", lambda folder: {"accuracy": 0.8}, params={})
    (step / "student_model").mkdir()
    (step / "student_model" / "config.json").write_text("{}")
    train.adopt_run(verdict / "runs" / "kd_cached", "same-key", step, verdict / "student_model")
    assert memo.load_unit(verdict / "runs" / "kd_cached", "same-key")["accuracy"] == 0.8
    assert (verdict / "student_model" / "config.json").is_file()
    train.adopt_run(verdict / "runs" / "kd_cached_other", "another-key", step)
    train.adopt_run(verdict / "runs" / "nokd", "another-key", step)
    assert not (verdict / "runs" / "nokd").exists() and not (verdict / "runs" / "kd_cached_other").exists()
