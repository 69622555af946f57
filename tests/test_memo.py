"""Memoised units: a key that follows what decides the numbers, and reuse only of complete, readable units."""
from __future__ import annotations

import json

import pytest

from kdlib import memo
from kdlib.config import DistillParams


def digest(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return memo._module_digest(path, path.stat().st_mtime_ns)


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
    a = memo.unit_key("distill", ["losses"], {"distill": DistillParams(), "seed": 1})
    assert a == memo.unit_key("distill", ["losses"], {"distill": DistillParams(), "seed": 1})
    assert a != memo.unit_key("distill", ["losses"], {"distill": DistillParams(temperature=4.0), "seed": 1})
    assert a != memo.unit_key("distill", ["losses"], {"distill": DistillParams(), "seed": 2})
    assert a != memo.unit_key("distill", ["losses", "distill"], {"distill": DistillParams(), "seed": 1})


def test_code_fingerprint_of_real_modules_is_stable():
    assert memo.code_fingerprint("losses", "distill") == memo.code_fingerprint("distill.py", "losses.py")


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
