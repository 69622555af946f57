"""The course material: the exercises' checks (right on the reference solutions, wrong on wrong ones), the
primer's pictures, the takeaways read from a run's numbers, the sandbox's folders, and the notebooks' shape
(what they show first, the lesson last, the sandbox parameters)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jupytext
import pytest
import torch

from kdlib.pipeline import sandbox, steps
from kdlib.teach import exercises, primer, solutions, takeaways

REPO = Path(__file__).resolve().parents[1]
NAMES = [name for ex in exercises.EXERCISES.values() for name in ex]

WRONG = {  # a plausible mistake for each exercise
    "majority_baseline": lambda labels: 1 / len(set(labels)),
    "truncated_share": lambda lengths, m: sum(n >= m for n in lengths) / len(lengths),
    "accuracy_interval": lambda acc, n: (acc - (acc * (1 - acc) / n) ** 0.5, acc + (acc * (1 - acc) / n) ** 0.5),
    "macro_f1": lambda c: float(torch.tensor(c).diag().sum() / torch.tensor(c).sum()),  # that is accuracy
    "soften": lambda logits, t: torch.softmax(logits, dim=-1),  # forgot T
    "kd_loss": lambda s, t, y, a, temp: a * torch.nn.functional.cross_entropy(s, y) + (1 - a) * solutions.soft_target_loss(
        s, t, temp) / temp**2,  # forgot T²
    "bert_parameters": lambda v, p, h, L, f, c: solutions.bert_parameters(v, p, h, L, f, c) - h * h - h,  # no pooler
    "really_differ": lambda a, b, n: abs(a - b) > 0.01,
    "fastest_within": lambda m, points: tuple(m.sort_values("speedup_vs_torch_fp32_teacher_bs1").iloc[-1][
        ["name", "runtime", "precision"]]),  # ignores the accuracy bound
    "paired_speedup": lambda t, s: float(sorted(t)[len(t) // 2] / sorted(s)[len(s) // 2]),  # ratio of medians
    "paired_difference": lambda a, b: (sum(a) / len(a) - sum(b) / len(b), 0.0),
    "squad_f1": lambda p, a: float(p == a),
    "exact_match": lambda p, a: float(p.lower() == a.lower()),
}


@pytest.mark.parametrize("name", NAMES)
def test_every_check_passes_the_reference_solution_and_fails_a_wrong_one(name, capsys):
    assert bool(exercises.check(name, getattr(solutions, name))) is True
    assert capsys.readouterr().out.startswith(f"✓ {name}")
    assert bool(exercises.check(name, WRONG[name])) is False
    assert capsys.readouterr().out.startswith(f"✗ {name}: wrong for (")


def test_an_unwritten_exercise_says_so_and_an_unknown_one_is_refused(capsys):
    def soften(logits, temperature):
        raise NotImplementedError("your code here")

    assert not exercises.check("soften", soften)
    assert capsys.readouterr().out == "· soften: not written yet\n"
    with pytest.raises(ValueError, match="no exercise 'softmax'"):
        exercises.check("softmax", soften)


def test_every_notebook_asks_its_exercises_and_checks_each(tmp_path):
    for stem, asked in exercises.EXERCISES.items():
        text = (REPO / "notebooks" / f"{stem}.py").read_text()
        for name in asked:
            assert f"def {name}(" in text and f'check("{name}", {name})' in text, (stem, name)


def test_soft_targets_flatten_as_the_temperature_rises():
    logits = torch.tensor([[4.0, 1.0, -2.0], [0.0, 3.0, 1.0]])
    frame = primer.soft_targets(logits, ["a", "b", "c"], (1, 2, 4, 10))
    sums = frame.groupby(["example", "T"])["probability"].sum()
    assert torch.allclose(torch.tensor(sums.to_numpy()), torch.ones(len(sums), dtype=torch.float64))
    top = frame[frame["example"] == 0].groupby("T")["probability"].max()
    assert list(top.index) == [1, 2, 4, 10] and top.is_monotonic_decreasing and top.iloc[-1] > 1 / 3


def test_the_layer_copy_picture_fills_the_layers_each_student_copies():
    fig = primer.layer_copy_figure(6, [1, 3, 6])
    filled = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] != (0.9, 0.9, 0.9)]
    assert len(fig.axes[0].patches) == 18 and len(filled) == 1 + 3 + 6


@pytest.fixture(scope="module")
def quick_metrics() -> dict[str, dict]:
    return {s.stem: json.loads((REPO / "reports" / "quick" / s.stem / "metrics.json").read_text())
            for s in steps.STEPS[:7]}


def test_each_takeaway_is_three_to_five_sentences_read_from_the_run(quick_metrics):
    m, n = quick_metrics, quick_metrics["00_data_prep"]["n_test"]
    said = {
        "00_data_prep": takeaways.data_prep(m["00_data_prep"]),
        "01_teacher": takeaways.teacher(m["01_teacher"], n),
        "02_distill": takeaways.distill(m["02_distill"], n),
        "03_grid": takeaways.grid(m["03_grid"]),
        "04_compare": takeaways.compare(m["04_compare"], n),
        "05_hetero_kd": takeaways.hetero(m["05_hetero_kd"]),
        "06_edge_benchmark": takeaways.edge(m["06_edge_benchmark"]),
    }
    for stem, sentences in said.items():
        assert 3 <= len(sentences) <= 5, stem
    assert f"{m['02_distill']['student_retention']:.1%}" in said["02_distill"][0]
    gain = 100 * (m["02_distill"]["student_test_accuracy"] - m["02_distill"]["nokd_test_accuracy"])
    assert f"{gain:+.1f} points" in said["02_distill"][1] and "standard error" in said["02_distill"][1]
    assert m["04_compare"]["ship_route"] in said["04_compare"][0]
    assert f"{m['01_teacher']['teacher_test_accuracy']:.1%}" in said["01_teacher"][0]
    shown = takeaways.show(said["03_grid"]).data
    assert shown.startswith("### What to take away") and shown.count("\n- ") == len(said["03_grid"])


def test_the_sandbox_writes_under_its_own_folder_and_reads_unchanged_steps_from_the_reference(reports_dir):
    for stem in ("00_data_prep", "01_teacher"):
        (reports_dir / "quick" / stem).mkdir(parents=True)
    quick = REPO / "params" / "quick.yaml"
    cfg = sandbox.profile("02_distill", quick, {"distill": {"temperature": 8.0}}, check_models=False)
    assert re.fullmatch(r"sandbox/try-[0-9a-f]{8}", cfg.profile) and cfg.distill.temperature == 8.0
    linked = reports_dir / cfg.profile / "01_teacher"
    assert linked.is_symlink() and linked.resolve() == (reports_dir / "quick" / "01_teacher").resolve()
    # A change to the teacher's section: 01 is not the reference's any more, so it is not linked.
    cfg = sandbox.profile("02_distill", quick, {"teacher": {"epochs": 1}}, "teacher-1", check_models=False)
    assert cfg.profile == "sandbox/teacher-1" and not (reports_dir / cfg.profile / "01_teacher").exists()
    # The step a sandbox runs is its own folder, even where another step of the experiment linked it.
    sandbox.profile("02_distill", quick, None, "mine", check_models=False)
    assert (reports_dir / "sandbox" / "mine" / "01_teacher").is_symlink()
    sandbox.profile("01_teacher", quick, None, "mine", check_models=False)
    assert not (reports_dir / "sandbox" / "mine" / "01_teacher").exists()
    with pytest.raises(sandbox.ParamsError, match="experiment '../x'"):
        sandbox.profile("02_distill", quick, None, "../x", check_models=False)
    assert sorted(p.name for p in (reports_dir / "quick").iterdir()) == ["00_data_prep", "01_teacher"]


def _cells(stem: str):
    return jupytext.read(REPO / "notebooks" / f"{stem}.py").cells


@pytest.mark.parametrize("step", [s.stem for s in steps.STEPS])
def test_each_notebook_tells_what_it_shows_takes_the_sandbox_and_ends_with_its_lesson(step):
    cells = _cells(step)
    assert cells[0].cell_type == "markdown" and len(cells[0].source.splitlines()) >= 3
    parameters = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert "overrides = {}" in parameters.source and "experiment = None" in parameters.source
    assert re.search(r"overrides=overrides,\s*experiment=experiment", "".join(c.source for c in cells))
    assert "takeaways.show(" in cells[-1].source.splitlines()[-1], step


def test_02_shows_the_loss_the_temperature_and_t2_before_training():
    sources = [c.source for c in _cells("02_distill")]
    first_training = next(i for i, s in enumerate(sources) if "train.launch(" in s)
    before = "\n".join(sources[:first_training])
    for shown in ("primer.soft_target_figure", "torch.allclose", "torch.autograd.grad", "layer_copy_figure", "T^2"):
        assert shown in before, shown
    assert "quantization" in "\n".join(c.source for c in _cells("04_compare")[:3]).lower()
