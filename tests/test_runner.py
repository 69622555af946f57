"""The runner: order, skipping finished steps, atomic outputs, resuming after a failure."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from kdlib import runner
from kdlib.outputs import atomic_path, write_json, write_metrics

STEP_CODE = '''
import json, os, pathlib
from kdlib.config import load_params
from kdlib.outputs import step_dir, write_metrics
cfg = load_params(params_file)
out = step_dir(cfg.profile, "{stem}")
log = pathlib.Path(os.environ["RUN_LOG"]); log.write_text(log.read_text() + "{stem}\\n" if log.exists() else "{stem}\\n")
if pathlib.Path(os.environ["FAIL_FLAG"]).exists() and "{stem}" == "02_second":
    raise RuntimeError("interrupted on purpose")
write_metrics(out, {{"value": cfg.seed}})
'''


def make_project(root: Path) -> Path:
    """A project with two small numbered notebooks and one params file."""
    (root / "kdlib").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "params").mkdir()
    for stem in ("01_first", "02_second"):
        nb = new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = new_code_cell('params_file = "../params/t.yaml"')
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, new_code_cell(STEP_CODE.format(stem=stem))]
        nbformat.write(nb, root / "notebooks" / f"{stem}.ipynb")
    path = root / "params" / "t.yaml"
    path.write_text(yaml.safe_dump({"profile": "t", "seed": 1}))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, data_dir):
    params = make_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.setenv("KD_REPORTS_DIR", str(tmp_path / "proj" / "reports"))
    monkeypatch.setenv("RUN_LOG", str(tmp_path / "ran.log"))
    monkeypatch.setenv("FAIL_FLAG", str(tmp_path / "fail"))
    return params


def ran(tmp_path) -> list[str]:
    log = tmp_path / "ran.log"
    out = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return out


def test_runs_in_order_then_skips_then_reruns_on_change(project, tmp_path):
    assert [s["status"] for s in runner.run(project)] == ["ran", "ran"]
    assert ran(tmp_path) == ["01_first", "02_second"]
    out = tmp_path / "proj" / "reports" / "t"
    assert (out / "01_first" / "01_first.ipynb").exists() and (out / "02_second" / "metrics.json").exists()
    assert [s["status"] for s in runner.run(project)] == ["skipped", "skipped"]
    assert ran(tmp_path) == []
    project.write_text(yaml.safe_dump({"profile": "t", "seed": 2}))  # a parameter changed: both rerun
    runner.run(project)
    assert ran(tmp_path) == ["01_first", "02_second"]
    assert json.loads((out / "02_second" / "metrics.json").read_text()) == {"value": 2}


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


def test_a_step_missing_a_promised_metric_is_not_complete(project, tmp_path, monkeypatch):
    monkeypatch.setitem(runner.REQUIRED_METRICS, "01_first", ["value", "another"])
    with pytest.raises(RuntimeError, match=r"lacks \['another'\]"):
        runner.run(project)


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
    assert json.loads(write_metrics(tmp_path, {"a": float("nan")}).read_text()) == {"a": None}
