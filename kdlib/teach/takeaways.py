"""What each notebook teaches, in three to five sentences generated from that run's numbers (with their
uncertainty where one run decides nothing), shown as the notebook's last cell: `show(takeaway(step, ...))`."""
from __future__ import annotations

import math

from IPython.display import Markdown

from kdlib.core.io import read_json
from kdlib.pipeline.paths import step_dir

Z95 = 1.96


def test_rows(cfg) -> int:
    """The size of the profile's test split, as step 00 recorded it."""
    return read_json(step_dir(cfg.profile, "00_data_prep", create=False) / "metrics.json")["n_test"]


def _se_pp(p: float, n: int) -> float:
    """The standard error of an accuracy p on n examples, in points."""
    return 100 * math.sqrt(p * (1 - p) / n)


def ci95(p, n: int):
    """Half the width of the 95% interval of an accuracy p (a number or a column) measured on n examples."""
    return Z95 * (p * (1 - p) / n) ** 0.5


def _interval(p: float, n: int) -> str:
    half = ci95(p, n)
    return f"{p:.1%} (95% interval {p - half:.1%} to {p + half:.1%} on {n} test rows)"


def data_prep(m: dict) -> list[str]:
    return [
        f"The study trains on {m['n_train']:,} rows and scores on {m['n_test']:,}; always answering the most "
        f"common class already scores {m['majority_share_test']:.1%} on test, the floor every model must clear.",
        f"{m['truncated_share']:.1%} of the training texts are longer than `max_length` and lose their end: the "
        "length is a trade between speed (every model runs at that length) and what the model can read.",
        f"{m['duplicate_rows']} duplicated rows and {m['texts_shared_between_splits']} texts found in two splits are "
        "counted, not dropped: a text in both train and test inflates test accuracy a little.",
    ]


def teacher(m: dict, n_test: int) -> list[str]:
    epochs = f"epoch {m['teacher_best_epoch']:g} of {m['teacher_epochs']:g}" if "teacher_best_epoch" in m else ""
    return [
        f"The fine-tuned teacher scores {_interval(m['teacher_test_accuracy'], n_test)}; its macro-F1, "
        f"{m['teacher_test_macro_f1']:.1%}, is lower because the smaller classes are harder.",
        f"It was kept at its best validation {epochs}: training longer fits the training rows better and the "
        "validation rows worse." if epochs else "It was kept at its best validation epoch.",
        f"It has {m['teacher_params'] / 1e6:.1f} M parameters; every student of the later steps starts from its "
        "weights and learns from its outputs.",
    ]


def distill(m: dict, n_test: int) -> list[str]:
    se = math.sqrt(_se_pp(m["student_test_accuracy"], n_test) ** 2 + _se_pp(m["nokd_test_accuracy"], n_test) ** 2)
    gain = 100 * (m["student_test_accuracy"] - m["nokd_test_accuracy"])
    verdict = ("one run cannot tell them apart" if abs(gain) < Z95 * se
               else "larger than one run's noise, though one seed is still one seed")
    return [
        f"The half-depth student keeps {m['student_retention']:.1%} of the teacher's test accuracy with "
        f"{m['student_params'] / m['teacher_params']:.0%} of its parameters, and runs "
        f"{m['student_speedup_fp32_bs1']:.2f}× faster at batch 1 (PyTorch fp32, timed in turn on this CPU).",
        f"KD beats its no-KD twin by {gain:+.1f} points ({m['student_test_accuracy']:.1%} against "
        f"{m['nokd_test_accuracy']:.1%}), but the standard error of such a difference on {n_test} test rows is "
        f"about {se:.1f} points: {verdict}. The study's verdicts repeat it over seeds.",
        f"Reading the teacher's outputs from the cache costs {m['cached_over_nokd_cost']:.2f}× the twin's "
        f"training time; running the teacher on every batch costs {m['online_over_nokd_cost']:.2f}×.",
    ]


def grid(m: dict) -> list[str]:
    ratio = m["layer_vs_ffn_time_ratio"]
    advice = ("more than widening the FFN", "depth is what to cut first when speed matters") if ratio > 1 else \
        ("less than widening the FFN", "on this CPU the FFN's width is worth cutting too")
    return [
        f"The best half-depth student chosen on validation, {m['best_half_depth_student']}, keeps "
        f"{m['best_half_depth_retention']:.1%} of the teacher's test accuracy.",
        f"Its measured speed-up is {m['speedup_over_flop_ratio_bs1']:.2f} of its FLOP ratio at batch 1 and "
        f"{m['speedup_over_flop_ratio_bs32']:.2f} at batch 32: on this CPU, time follows the arithmetic.",
        f"At the largest batch, one more layer costs {advice[0]} (time ratio {ratio:.2f}): {advice[1]}.",
        f"Distilling the student in general before the task changed half-depth accuracy by "
        f"{m['general_distill_gain_pp']:+.1f} points (one run, one seed).",
    ]


def compare(m: dict, n_test: int) -> list[str]:
    drop = 100 * (m["teacher_accuracy"] - m["ship_test_accuracy"])
    return [
        f"The model to ship on this CPU is the {m['ship_model']} on {m['ship_route']}: "
        f"{m['ship_speedup_bs1']:.1f}× faster than the PyTorch fp32 teacher at batch 1, {drop:+.1f} points below it "
        f"on test (chosen within 1 point on validation; one accuracy on this test split has a standard error of about "
        f"{_se_pp(m['teacher_accuracy'], n_test):.1f} points, so gaps of a point or two are ties).",
        f"The fastest route within 97% of the teacher reaches {m['best_speedup_within_3pct']:.1f}× "
        f"({m['best_route_within_3pct']}).",
        f"The fastest quantized route, {m['best_quantized_route']}, runs {m['best_quantized_speedup']:.1f}× faster but "
        f"loses {m['best_quantized_accuracy_drop_pp']:.1f} points: speed alone is not the answer.",
        "The runtime and the precision change the speed as much as the model's size does: compare routes, not only "
        "models.",
    ]


def hetero(m: dict) -> list[str]:
    p = m["p_A_vs_B"]
    out = [
        f"Over {m['n_seeds']} seeds the dense students score {m['acc_A_mean']:.1%} (A), {m['acc_B_mean']:.1%} (B) "
        f"and {m['acc_C_mean']:.1%} (C), spreads of about {max(m['acc_A_std'], m['acc_B_std']):.1%}: "
        + ("the seeds cannot tell A from B" if p >= 0.05 else "A and B differ beyond the seeds' spread")
        + f" (p = {p:.2f}).",
        "A claim that one student beats another needs this: several seeds and a test on the pairs.",
    ]
    if "transformer_hetero_acc" in m:
        q = m["transformer_p_hetero_vs_plain"]
        word = "hurt" if m["transformer_hetero_acc"] < m["transformer_plain_acc"] else "helped"
        out.append(f"For a transformer student, heterogeneous KD {word}: {m['transformer_hetero_acc']:.1%} against "
                   f"{m['transformer_plain_acc']:.1%} trained plainly (p = {q:.3f}).")
    return out


def edge(m: dict) -> list[str]:
    return [
        f"On {m['eval_questions']} SQuAD questions the half-depth student keeps {m['student_f1_retention']:.0%} of "
        f"the teacher's F1 ({m['student_f1']:.1f} against {m['teacher_f1']:.1f}) and is {m['student_speedup']:.2f}× "
        "faster, timed in turn.",
        f"On its quantized route chosen for this CPU ({m.get('quantized_student_route')}), it is "
        f"{m['quantized_student_speedup']:.2f}× faster than the teacher at F1 {m['quantized_student_f1']:.1f}."
        if m.get("quantized_student_speedup") is not None else "No quantized route of the student ran here.",
        "This teacher is trained on a small subset: read the ratios, not the F1 values, against the paper's.",
    ]


def report(m: dict, pdf: str) -> list[str]:
    return [
        f"The report, {m['n_pages']} pages, is at `{pdf}`; its first page gives the model to ship and the findings "
        "that matter most, and every number in it is read from a file a step wrote.",
        f"{m['findings_with_verdict']} findings carry a verdict over several seeds; the others are single runs and "
        "say so.",
        "A step that did not run in this profile is listed as not run, never filled in."
        if m["sections_not_run"] == 0 else f"{m['sections_not_run']} sections did not run in this profile and say so.",
    ]


def show(sentences: list[str], title: str = "What to take away") -> Markdown:
    """The takeaway as the notebook's last output."""
    return Markdown(f"### {title}\n\n" + "\n".join(f"- {s}" for s in sentences))
