"""The runner: order, skipping finished steps, atomic outputs, resuming after a failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kdlib.core.io import atomic_path, write_json, write_metrics
from kdlib.pipeline import runner, steps
from kdlib.pipeline.config import StudyParams
from kdlib.pipeline.steps import Step

REPO = Path(__file__).resolve().parents[1]

STEP_CODE = '''
import json, os, pathlib
from kdlib.pipeline.config import load_params
from kdlib.pipeline.paths import step_dir
from kdlib.core.io import write_metrics
cfg = load_params(params_file)
out = step_dir(cfg.profile, "{stem}")
log = pathlib.Path(os.environ["RUN_LOG"]); log.write_text(log.read_text() + "{stem}\\n" if log.exists() else "{stem}\\n")
if pathlib.Path(os.environ["FAIL_FLAG"]).exists() and "{stem}" == "02_second":
    raise RuntimeError("interrupted on purpose")
(out / "table.csv").write_text("a\\n1\\n")
write_metrics(out, {{"value": cfg.seed}})
'''

TEST_STEPS = (
    Step("01_first", "First", sections=("data",), metrics=("value",), outputs=("table.csv",)),
    Step("02_second", "Second", needs=("01_first",), sections=("teacher",), metrics=("value",),
         outputs=("table.csv",)),
)


def make_project(root: Path) -> Path:
    """A project with two small text notebooks (jupytext percent) and one params file."""
    (root / "kdlib").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "params").mkdir()
    for step in TEST_STEPS:
        text = ('# %% tags=["parameters"]\nparams_file = "../params/t.yaml"\n\n# %%\n'
                + STEP_CODE.format(stem=step.stem))
        (root / "notebooks" / f"{step.stem}.py").write_text(text)
    path = root / "params" / "t.yaml"
    path.write_text(yaml.safe_dump({"profile": "t", "seed": 1}))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, data_dir):
    params = make_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setattr(steps, "STEPS", TEST_STEPS)
    monkeypatch.setattr(steps, "BY_STEM", {s.stem: s for s in TEST_STEPS})
    monkeypatch.setenv("KD_REPORTS_DIR", str(tmp_path / "proj" / "reports"))
    monkeypatch.setenv("RUN_LOG", str(tmp_path / "ran.log"))
    monkeypatch.setenv("FAIL_FLAG", str(tmp_path / "fail"))
    # The library's digests, pinned: these tests are about the runner, not about edits to kdlib.
    monkeypatch.setattr(runner, "library_digests", lambda: dict(LIBRARY))
    return params


LIBRARY = {"losses.py": "aaaa", "plots.py": "bbbb"}


def ran(tmp_path) -> list[str]:
    log = tmp_path / "ran.log"
    out = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return out


def reasons(params) -> dict[str, list[str]]:
    return {row["step"]: row["reasons"] for row in runner.status(params)}


def test_runs_in_order_then_skips_then_reruns_on_change(project, tmp_path):
    assert reasons(project) == {"01_first": ["never finished"], "02_second": ["never finished"]}
    assert [s["status"] for s in runner.run(project)] == ["ran", "ran"]
    assert ran(tmp_path) == ["01_first", "02_second"]
    out = tmp_path / "proj" / "reports" / "t"
    assert (out / "01_first" / "01_first.ipynb").exists() and (out / "02_second" / "metrics.json").exists()
    assert reasons(project) == {"01_first": [], "02_second": []}
    assert [s["status"] for s in runner.run(project)] == ["skipped", "skipped"]
    assert ran(tmp_path) == []
    project.write_text(yaml.safe_dump({"profile": "t", "seed": 2}))  # a parameter every step reads
    assert reasons(project)["01_first"] == ["parameters changed: seed"]
    runner.run(project)
    assert ran(tmp_path) == ["01_first", "02_second"]
    assert json.loads((out / "02_second" / "metrics.json").read_text()) == {"value": 2}


def test_a_change_reruns_its_step_and_the_steps_after_it_only(project, tmp_path):
    runner.run(project)
    ran(tmp_path)
    project.write_text(yaml.safe_dump({"profile": "t", "seed": 1, "teacher": {"epochs": 5}}))
    assert reasons(project) == {"01_first": [], "02_second": ["parameters changed: teacher"]}
    runner.run(project)
    assert ran(tmp_path) == ["02_second"]
    notebook = tmp_path / "proj" / "notebooks" / "01_first.py"
    notebook.write_text(notebook.read_text() + "\n# %% [markdown]\n# A new paragraph.\n")
    why = reasons(project)
    assert why["01_first"] == ["notebook 01_first.py changed"]
    assert why["02_second"] == ["re-ran or stale before it: 01_first"]


def test_an_edit_to_kdlib_is_named(project, tmp_path, monkeypatch):
    runner.run(project)
    monkeypatch.setattr(runner, "library_digests", lambda: {**LIBRARY, "plots.py": "cccc"})
    why = reasons(project)
    assert why["01_first"] == ["kdlib changed: plots.py"]
    assert why["02_second"] == ["kdlib changed: plots.py", "re-ran or stale before it: 01_first"]


def test_a_step_whose_outputs_are_missing_is_stale(project, tmp_path):
    runner.run(project)
    (tmp_path / "proj" / "reports" / "t" / "02_second" / "table.csv").unlink()
    assert reasons(project) == {"01_first": [], "02_second": ["outputs missing: table.csv"]}
    assert [s["status"] for s in runner.run(project)] == ["skipped", "ran"]


def test_only_runs_the_named_step(project, tmp_path):
    runner.run(project, only=["02"])
    assert ran(tmp_path) == ["02_second"]
    with pytest.raises(ValueError, match="no step '09'"):
        runner.run(project, only=["09"])


def test_an_interrupted_run_resumes_without_redoing_finished_steps(project, tmp_path):
    (tmp_path / "fail").touch()
    with pytest.raises(Exception, match="interrupted on purpose"):
        runner.run(project)
    out = tmp_path / "proj" / "reports" / "t" / "02_second"
    assert not (out / "02_second.ipynb").exists() and not (out / runner.STAMP).exists()
    assert (out / "02_second.failed.ipynb").exists()  # the partial run is kept for reading, under another name
    assert ran(tmp_path) == ["01_first", "02_second"]
    (tmp_path / "fail").unlink()
    assert [s["status"] for s in runner.run(project)] == ["skipped", "ran"]
    assert ran(tmp_path) == ["02_second"]
    assert not (out / "02_second.failed.ipynb").exists()


def test_a_step_missing_a_promised_metric_fails(project, tmp_path, monkeypatch):
    broken = (TEST_STEPS[0].__class__("01_first", "First", metrics=("value", "another")), TEST_STEPS[1])
    monkeypatch.setattr(steps, "STEPS", broken)
    with pytest.raises(RuntimeError, match=r"did not write \['another'\]"):
        runner.run(project)


def test_the_manifest_matches_the_notebooks():
    found = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.py"))
    assert found == [s.stem for s in steps.STEPS]
    for s in steps.STEPS:
        assert all(n in steps.BY_STEM and steps.STEPS.index(steps.BY_STEM[n]) < steps.STEPS.index(s)
                   for n in s.needs), s.stem
        assert set(s.sections) <= set(StudyParams.__dataclass_fields__), s.stem


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_metrics_must_be_flat_and_complete(tmp_path):
    with pytest.raises(KeyError):
        write_metrics(tmp_path, {"a": 1}, required=["b"])
    with pytest.raises(TypeError):
        write_metrics(tmp_path, {"a": {"nested": 1}})
    write_metrics(tmp_path, {"a": float("nan")})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"a": None}
