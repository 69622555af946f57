"""Tests for kdlib.core.losses: each value is checked against arithmetic done by hand
(math.log / math.exp on 2-3 classes), not against the torch code under test."""

from __future__ import annotations

import math

import pytest
import torch

from kdlib.core.losses import (
    LOSSES,
    HiddenProjection,
    cosine_hidden_loss,
    distilbert_triple_loss,
    get_loss,
    hard_ce,
    hetero_kd_loss,
    kd_loss,
    mlm_loss,
    soft_target_kd,
    tinybert_attention_loss,
    tinybert_embedding_loss,
    tinybert_hidden_loss,
    tinybert_prediction_loss,
    uniform_layer_map,
)

ln = math.log


def logits_of(*probs: float) -> list[float]:
    """Logits whose softmax is exactly `probs` (log-probabilities)."""
    return [ln(p) for p in probs]


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def approx(x: float, rel: float = 1e-5, abs_tol: float = 1e-9):
    return pytest.approx(x, rel=rel, abs=abs_tol)


# Row 1: teacher [0.7, 0.2, 0.1] vs student [0.5, 0.3, 0.2]
KL_ROW1 = 0.7 * ln(0.7 / 0.5) + 0.2 * ln(0.2 / 0.3) + 0.1 * ln(0.1 / 0.2)  # 0.085123
# Row 2: teacher [0.5, 0.25, 0.25] vs student uniform
KL_ROW2 = 0.5 * ln(0.5 * 3) + 0.25 * ln(0.25 * 3) + 0.25 * ln(0.25 * 3)  # 0.058892
TEACHER_2x3 = [logits_of(0.7, 0.2, 0.1), logits_of(0.5, 0.25, 0.25)]
STUDENT_2x3 = [logits_of(0.5, 0.3, 0.2), [0.0, 0.0, 0.0]]


# -----------------------------------------------------------------------------
# soft-target KD


def test_soft_target_kd_hand_value_2x3():
    assert KL_ROW1 == approx(0.085123, rel=1e-4)
    expected = (KL_ROW1 + KL_ROW2) / 2  # batchmean, T^2 = 1
    got = soft_target_kd(t(STUDENT_2x3), t(TEACHER_2x3), temperature=1.0).item()
    assert got == approx(expected)


def test_soft_target_kd_is_t_squared_times_tempered_kl():
    s, te, T = [1.0, 2.0, 3.0], [3.0, 0.0, 1.0], 2.0

    def softmax(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    p, q = softmax(te), softmax(s)
    plain_kl = sum(pi * ln(pi / qi) for pi, qi in zip(p, q))
    got = soft_target_kd(t([s]), t([te]), temperature=T).item()
    assert got == approx(T**2 * plain_kl)
    assert got == approx(4.0 * plain_kl)


def test_soft_target_kd_doubling_t_and_logits_gives_4x():
    s, te = t(STUDENT_2x3), t(TEACHER_2x3)
    base = soft_target_kd(s, te, temperature=1.0)
    doubled = soft_target_kd(2 * s, 2 * te, temperature=2.0)
    # same tempered distributions, so only the T^2 factor changes: 1 -> 4
    assert doubled.item() == approx(4.0 * base.item(), rel=1e-12)


def test_soft_target_kd_zero_when_equal():
    torch.manual_seed(0)
    z = torch.randn(4, 5)
    for T in (0.5, 1.0, 4.0):
        assert abs(soft_target_kd(z, z.clone(), T).item()) < 1e-7


def test_soft_target_kd_non_negative_random():
    torch.manual_seed(1)
    for _ in range(20):
        s, te = torch.randn(8, 7) * 3, torch.randn(8, 7) * 3
        assert soft_target_kd(s, te, temperature=float(torch.rand(()) * 5 + 0.1)).item() >= 0.0


def test_soft_target_kd_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        soft_target_kd(t(STUDENT_2x3), t(TEACHER_2x3), temperature=0.0)


# -----------------------------------------------------------------------------
# hard CE and the alpha mix


def test_hard_ce_hand_value_and_ignore_index():
    logits = t([logits_of(0.7, 0.2, 0.1), logits_of(0.5, 0.3, 0.2), [9.0, -9.0, 0.0]])
    labels = torch.tensor([0, 2, -100])
    assert hard_ce(logits, labels).item() == approx((-ln(0.7) - ln(0.2)) / 2)


def test_kd_loss_alpha_endpoints_and_mix():
    s, te = t(STUDENT_2x3), t(TEACHER_2x3)
    labels = torch.tensor([0, 1])
    ce = -(ln(0.5) + ln(1 / 3)) / 2  # student probs of the gold labels
    kd = (KL_ROW1 + KL_ROW2) / 2
    assert kd_loss(s, te, labels, alpha=1.0, temperature=1.0).item() == approx(ce)
    assert kd_loss(s, te, labels, alpha=1.0, temperature=1.0).item() == hard_ce(s, labels).item()
    assert kd_loss(s, te, labels, alpha=0.0, temperature=1.0).item() == approx(kd)
    assert (
        kd_loss(s, te, labels, alpha=0.0, temperature=3.0).item()
        == soft_target_kd(s, te, 3.0).item()
    )
    assert kd_loss(s, te, labels, alpha=0.3, temperature=1.0).item() == approx(0.3 * ce + 0.7 * kd)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_kd_loss_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(t(STUDENT_2x3), t(TEACHER_2x3), torch.tensor([0, 1]), alpha, 1.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_kd_loss_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(t(STUDENT_2x3), t(TEACHER_2x3), torch.tensor([0, 1]), 0.5, temperature)


# -----------------------------------------------------------------------------
# gradients reach the student only


def _teacher_loss_cases():
    torch.manual_seed(2)
    B, L, H, V, C = 2, 3, 4, 5, 3
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    mlm_labels = torch.tensor([[2, -100, -100], [-100, 0, 4]])

    def leaf(*shape):
        return torch.randn(*shape, requires_grad=True)

    def attn(heads):
        return torch.randn(B, heads, L, L).softmax(-1).requires_grad_()

    proj = HiddenProjection(H, 6)
    yield "soft_target_kd", (s := leaf(B, C)), (te := leaf(B, C)), lambda: soft_target_kd(s, te, 2.0)
    yield "kd_loss", (s2 := leaf(B, C)), (te2 := leaf(B, C)), lambda: kd_loss(
        s2, te2, torch.tensor([0, 2]), 0.5, 2.0
    )
    yield "cosine", (s3 := leaf(B, L, H)), (te3 := leaf(B, L, H)), lambda: cosine_hidden_loss(
        s3, te3, mask
    )
    sm, tm, sh, th = leaf(B, L, V), leaf(B, L, V), leaf(B, L, H), leaf(B, L, H)
    yield "triple", [sm, sh], [tm, th], lambda: distilbert_triple_loss(
        sm, tm, mlm_labels, sh, th, mask
    )["loss"]
    yield "tiny_emb", (se := leaf(B, L, H)), (te_ := leaf(B, L, 6)), lambda: tinybert_embedding_loss(
        se, te_, proj
    )
    shs, ths = [leaf(B, L, H) for _ in range(2)], [leaf(B, L, 6) for _ in range(4)]
    yield "tiny_hidden", shs, ths, lambda: tinybert_hidden_loss(shs, ths, [1, 3], proj)
    sas, tas = [attn(2) for _ in range(2)], [attn(2) for _ in range(4)]
    yield "tiny_attn", sas, tas, lambda: tinybert_attention_loss(sas, tas, [1, 3], mask)
    yield "tiny_pred", (sp := leaf(B, C)), (tp := leaf(B, C)), lambda: tinybert_prediction_loss(
        sp, tp, 2.0
    )
    sf, sc, tc = leaf(B, 6), leaf(B, C), leaf(B, C)
    yield "hetero", [sf, sc], tc, lambda: hetero_kd_loss(sf, sc, tc, torch.tensor([1, 5]), 0.5, 2.0)


@pytest.mark.parametrize("case", list(_teacher_loss_cases()), ids=lambda c: c[0])
def test_gradients_reach_student_only(case):
    _, students, teachers, compute = case
    students = students if isinstance(students, list) else [students]
    teachers = teachers if isinstance(teachers, list) else [teachers]
    loss = compute()
    assert loss.requires_grad
    loss.backward()
    for x in teachers:
        assert x.grad is None
    for x in students:
        assert x.grad is not None and x.grad.abs().sum().item() > 0


# -----------------------------------------------------------------------------
# DistilBERT


def test_cosine_identical_orthogonal_opposite():
    s = t([[[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]]])
    mask = torch.ones(1, 3)
    assert cosine_hidden_loss(s, s.clone(), mask).item() == approx(0.0, abs_tol=1e-12)
    # same direction, different norm: still zero
    assert cosine_hidden_loss(s, 5 * s, mask).item() == approx(0.0, abs_tol=1e-12)
    ortho = t([[[0.0, 3.0], [-1.0, 0.0], [4.0, -3.0]]])
    assert cosine_hidden_loss(s, ortho, mask).item() == approx(1.0)
    assert cosine_hidden_loss(s, -s, mask).item() == approx(2.0)


def test_cosine_ignores_masked_positions():
    s = t([[[1.0, 0.0], [0.0, 1.0], [7.0, 7.0]]])
    te = t([[[1.0, 0.0], [1.0, 0.0], [-1.0, 2.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert cosine_hidden_loss(s, te, mask).item() == approx((0.0 + 1.0) / 2)
    s2, te2 = s.clone(), te.clone()
    s2[0, 2] = t([-3.0, 0.5])
    te2[0, 2] = t([2.0, 9.0])
    assert cosine_hidden_loss(s2, te2, mask).item() == cosine_hidden_loss(s, te, mask).item()


def test_mlm_loss_ignores_unmasked_positions():
    logits = t([[[5.0, -2.0, 1.0], logits_of(0.2, 0.3, 0.5), logits_of(0.6, 0.3, 0.1)]])
    labels = torch.tensor([[-100, 2, 0]])
    expected = (-ln(0.5) - ln(0.6)) / 2
    assert mlm_loss(logits, labels).item() == approx(expected)
    logits2 = logits.clone()
    logits2[0, 0] = t([-8.0, 3.0, 0.0])
    assert mlm_loss(logits2, labels).item() == approx(expected)
    # no target at all: zero, not NaN
    assert mlm_loss(logits, torch.full_like(labels, -100)).item() == 0.0


def test_triple_loss_is_weighted_sum_of_parts():
    torch.manual_seed(3)
    B, L, H, V = 2, 4, 6, 7
    sm, tm = torch.randn(B, L, V), torch.randn(B, L, V)
    sh, th = torch.randn(B, L, H), torch.randn(B, L, H)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    labels = torch.tensor([[3, -100, 1, -100], [-100, 6, -100, -100]])
    out = distilbert_triple_loss(sm, tm, labels, sh, th, mask)
    assert set(out) == {"loss", "kd", "mlm", "cos"}
    parts = 5.0 * out["kd"] + 2.0 * out["mlm"] + 1.0 * out["cos"]  # DistilBERT defaults
    assert out["loss"].item() == approx(parts.item())
    out2 = distilbert_triple_loss(sm, tm, labels, sh, th, mask, 1.0, 0.5, 0.25, 3.0)
    parts2 = 0.5 * out2["kd"] + 0.25 * out2["mlm"] + 3.0 * out2["cos"]
    assert out2["loss"].item() == approx(parts2.item())
    # the KD term only sees real tokens: padded logits do not matter
    sm3, tm3 = sm.clone(), tm.clone()
    sm3[0, 3], tm3[1, 2:] = 100.0, -100.0
    assert distilbert_triple_loss(sm3, tm3, labels, sh, th, mask)["kd"].item() == approx(
        out["kd"].item()
    )


def test_triple_loss_kd_hand_value():
    # one sequence, two real tokens and one pad; T = 1 so T^2 = 1
    sm = t([[logits_of(0.5, 0.3, 0.2), [0.0, 0.0, 0.0], [4.0, 0.0, 0.0]]])
    tm = t([[logits_of(0.7, 0.2, 0.1), logits_of(0.5, 0.25, 0.25), [0.0, 0.0, 4.0]]])
    h = torch.ones(1, 3, 2)
    labels = torch.tensor([[-100, -100, -100]])
    out = distilbert_triple_loss(sm, tm, labels, h, h, torch.tensor([[1, 1, 0]]), temperature=1.0)
    assert out["kd"].item() == approx((KL_ROW1 + KL_ROW2) / 2)


# -----------------------------------------------------------------------------
# TinyBERT


def test_uniform_layer_map():
    assert uniform_layer_map(4, 12) == [2, 5, 8, 11]
    assert uniform_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
    assert uniform_layer_map(12, 12) == list(range(12))
    assert uniform_layer_map(3, 4) == [0, 1, 3]  # floor(m*4/3) - 1
    with pytest.raises(ValueError):
        uniform_layer_map(13, 12)
    with pytest.raises(ValueError):
        uniform_layer_map(0, 12)


def test_tinybert_hidden_loss_hand_value():
    junk = t([[[99.0, -99.0]]])
    student = [t([[[1.0, 2.0]]]), t([[[0.0, 0.0]]])]
    teacher = [junk, t([[[1.0, 0.0]]]), junk, t([[[3.0, 4.0]]])]
    # layer 0 -> teacher 1: ((1-1)^2 + (2-0)^2) / 2 = 2
    # layer 1 -> teacher 3: ((0-3)^2 + (0-4)^2) / 2 = 12.5
    assert tinybert_hidden_loss(student, teacher, [1, 3]).item() == approx(14.5)
    with pytest.raises(ValueError):
        tinybert_hidden_loss(student, teacher, [1])  # one entry per student layer


def test_tinybert_embedding_loss_hand_value():
    s, te = t([[[1.0, -1.0], [2.0, 0.0]]]), t([[[0.0, 1.0], [2.0, 3.0]]])
    assert tinybert_embedding_loss(s, te).item() == approx((1 + 4 + 0 + 9) / 4)


def test_hidden_projection_maps_widths():
    d_s, d_t = 4, 8
    proj = HiddenProjection(d_s, d_t)
    x = torch.randn(2, 3, d_s)
    assert proj(x).shape == (2, 3, d_t)
    assert sum(p.numel() for p in proj.parameters()) == d_s * d_t + d_t
    teacher = [torch.randn(2, 3, d_t) for _ in range(2)]
    loss = tinybert_hidden_loss([x], teacher, [1], proj)
    assert loss.ndim == 0 and loss.item() > 0
    with pytest.raises(ValueError, match="width"):
        tinybert_hidden_loss([x], teacher, [1])  # widths differ and no projection


def test_tinybert_attention_loss_hand_value_and_mask():
    s = [t([[[[0.5, 0.5], [1.0, 0.0]]]])]  # [B=1, heads=1, L=2, L=2]
    te = [t([[[[1.0, 0.0], [1.0, 0.0]]]])]
    # squared diffs: 0.25, 0.25, 0, 0 -> mean 0.125
    assert tinybert_attention_loss(s, te, [0]).item() == approx(0.125)
    # second token is padding: only the (0, 0) pair is left -> 0.25
    assert tinybert_attention_loss(s, te, [0], torch.tensor([[1, 0]])).item() == approx(0.25)


def test_tinybert_attention_head_mismatch_raises():
    s = [torch.rand(1, 2, 3, 3)]
    te = [torch.rand(1, 4, 3, 3)]
    with pytest.raises(ValueError, match=r"2 heads.*4"):
        tinybert_attention_loss(s, te, [0])


def test_tinybert_prediction_loss_hand_value():
    s, te = t([logits_of(0.5, 0.3, 0.2)]), t([logits_of(0.7, 0.2, 0.1)])
    expected = -(0.7 * ln(0.5) + 0.2 * ln(0.3) + 0.1 * ln(0.2))
    assert tinybert_prediction_loss(s, te).item() == approx(expected)
    # no T^2: at T=2 the value is the plain soft CE of the tempered distributions
    a = [math.exp(v / 2) for v in logits_of(0.7, 0.2, 0.1)]
    b = [math.exp(v / 2) for v in logits_of(0.5, 0.3, 0.2)]
    p, q = [v / sum(a) for v in a], [v / sum(b) for v in b]
    expected_t2 = -sum(pi * ln(qi) for pi, qi in zip(p, q))
    assert tinybert_prediction_loss(s, te, temperature=2.0).item() == approx(expected_t2)


# -----------------------------------------------------------------------------
# Heterogeneous KD (Yu & Kim 2022)


def test_hetero_kd_weighted_sum_hand_value():
    fine = t([logits_of(0.1, 0.2, 0.3, 0.4)])
    s_coarse, t_coarse = t([logits_of(0.5, 0.3, 0.2)]), t([logits_of(0.7, 0.2, 0.1)])
    labels = torch.tensor([3])
    # alpha = 0.25, T = 1: 0.25 * (-ln 0.4) + 0.75 * KL_ROW1
    got = hetero_kd_loss(fine, s_coarse, t_coarse, labels, alpha=0.25, temperature=1.0).item()
    assert got == approx(0.25 * -ln(0.4) + 0.75 * KL_ROW1)
    # T = 2 on the same probabilities: the KD part carries T^2
    got_t2 = hetero_kd_loss(fine, s_coarse, t_coarse, labels, alpha=0.25, temperature=2.0).item()
    kd_t2 = soft_target_kd(s_coarse, t_coarse, 2.0).item()
    assert got_t2 == approx(0.25 * -ln(0.4) + 0.75 * kd_t2)
    with pytest.raises(ValueError, match="alpha"):
        hetero_kd_loss(fine, s_coarse, t_coarse, labels, alpha=2.0, temperature=1.0)


def test_hetero_kd_paper_fig9_example():
    """Fig. 9 of the paper: T=1, student-loss weight 0.1, Distillation Loss 0.0851,
    Student Loss 0.5108, total 0.1277 = 0.9*0.0851 + 0.1*0.5108.

    The figure's distributions are not in the text, so they are reconstructed:
    Student Loss 0.5108 = -ln 0.6 (gold fine class at probability 0.6), and
    KL([0.7, 0.2, 0.1] || [0.5, 0.3, 0.2]) = 0.0851, where [0.7, 0.2, 0.1] is
    the teacher output used in the paper's Fig. 7 example. These reproduce all
    three reported numbers but are not confirmed to be the figure's values.
    """
    fine = t([logits_of(0.6, 0.1, 0.1, 0.1, 0.05, 0.05)])  # 6 fine classes
    labels = torch.tensor([0])
    t_coarse = t([logits_of(0.7, 0.2, 0.1)])  # teacher over 3 coarse classes
    s_coarse = t([logits_of(0.5, 0.3, 0.2)])  # student's distillation layer
    assert hard_ce(fine, labels).item() == approx(0.5108, rel=1e-4)
    assert soft_target_kd(s_coarse, t_coarse, 1.0).item() == approx(0.0851, rel=1e-3)
    total = hetero_kd_loss(fine, s_coarse, t_coarse, labels, alpha=0.1, temperature=1.0).item()
    assert round(total, 4) == 0.1277
    assert total == approx(0.9 * KL_ROW1 + 0.1 * -ln(0.6))


# -----------------------------------------------------------------------------
# The registry: named losses on dicts of outputs


def test_every_registered_name_resolves_and_declares_its_needs():
    assert {"ce", "soft_target", "hetero", "triple", "tinybert"} <= set(LOSSES)
    for name, spec in LOSSES.items():
        assert get_loss(name) is spec and spec.name == name
    # logits-only losses can read cached teacher outputs; layer losses need the teacher online
    assert not get_loss("ce").needs_teacher and not get_loss("ce").cacheable
    assert get_loss("soft_target").cacheable and get_loss("hetero").cacheable
    assert get_loss("triple").hidden_states and not get_loss("triple").cacheable
    assert get_loss("tinybert").hidden_states and get_loss("tinybert").attentions
    assert get_loss("soft_target").options == {"alpha", "temperature"}
    assert get_loss("hetero").options == {"alpha", "temperature", "convention"}


def test_unknown_loss_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown loss 'kld'; known losses: ") as e:
        get_loss("kld")
    assert str(e.value).endswith(", ".join(sorted(LOSSES)))


def test_registered_soft_target_is_kd_loss_bit_for_bit():
    """The trainer's cached-KD path: same value and same gradients as kd_loss, exactly."""
    torch.manual_seed(4)
    z, te, labels = torch.randn(8, 3), torch.randn(8, 3), torch.randint(0, 3, (8,))
    s1, s2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    out = get_loss("soft_target")({"logits": s1}, {"logits": te}, {"labels": labels}, alpha=0.3, temperature=3.0)
    ref = kd_loss(s2, te, labels, 0.3, 3.0)
    assert torch.equal(out["loss"], ref)
    out["loss"].backward()
    ref.backward()
    assert torch.equal(s1.grad, s2.grad)
    # the logged terms are the unweighted parts
    assert torch.equal(out["ce"], hard_ce(z, labels)) and torch.equal(out["kd"], soft_target_kd(z, te, 3.0))
    # without teacher outputs, or at alpha = 1: plain CE, as the trainer always did
    for teacher, alpha in ((None, 0.3), ({"logits": te}, 1.0)):
        plain = get_loss("soft_target")({"logits": z}, teacher, {"labels": labels}, alpha=alpha, temperature=3.0)
        assert torch.equal(plain["loss"], hard_ce(z, labels)) and set(plain) == {"loss", "ce"}


def test_soft_target_on_qa_averages_start_and_end():
    # 1 row, 3 tokens. Start: student [0.5, 0.3, 0.2] vs teacher [0.7, 0.2, 0.1], gold 0.
    # End: student uniform vs teacher [0.5, 0.25, 0.25], gold 2.
    student = {"start_logits": t([logits_of(0.5, 0.3, 0.2)]), "end_logits": t([[0.0, 0.0, 0.0]])}
    teacher = {"start_logits": t([logits_of(0.7, 0.2, 0.1)]), "end_logits": t([logits_of(0.5, 0.25, 0.25)])}
    labels = {"start_positions": torch.tensor([0]), "end_positions": torch.tensor([2])}
    out = get_loss("soft_target")(student, teacher, labels, alpha=0.4, temperature=1.0)
    ce = (-ln(0.5) - ln(1 / 3)) / 2
    kd = (KL_ROW1 + KL_ROW2) / 2
    assert out["ce"].item() == approx(ce) and out["kd"].item() == approx(kd)
    assert out["loss"].item() == approx(0.4 * ce + 0.6 * kd)
    assert get_loss("ce")(student, None, labels)["loss"].item() == approx(ce)  # BertForQuestionAnswering's mean


def _hetero_case():
    fine = t([logits_of(0.1, 0.2, 0.3, 0.4)])
    s_coarse, t_coarse = t([logits_of(0.5, 0.3, 0.2)]), t([logits_of(0.7, 0.2, 0.1)])
    return {"logits": fine, "distill_logits": s_coarse}, {"logits": t_coarse}, {"labels": torch.tensor([3])}


def test_registered_hetero_ours_and_paper_hand_values():
    student, teacher, labels = _hetero_case()
    hetero = get_loss("hetero")
    # T = 1: the conventions agree: 0.25 * (-ln 0.4) + 0.75 * KL_ROW1
    for convention in ("ours", "paper"):
        got = hetero(student, teacher, labels, alpha=0.25, temperature=1.0, convention=convention)
        assert got["loss"].item() == approx(0.25 * -ln(0.4) + 0.75 * KL_ROW1)
    # T = 2 by hand: the tempered distributions are p^(1/2), renormalised
    def tempered(*p):
        r = [math.sqrt(v) for v in p]
        return [v / sum(r) for v in r]

    pt, ps = tempered(0.7, 0.2, 0.1), tempered(0.5, 0.3, 0.2)
    kl_t2 = sum(a * ln(a / b) for a, b in zip(pt, ps))
    ours = hetero(student, teacher, labels, alpha=0.25, temperature=2.0, convention="ours")
    paper = hetero(student, teacher, labels, alpha=0.25, temperature=2.0, convention="paper")
    assert ours["loss"].item() == approx(0.25 * -ln(0.4) + 0.75 * 4 * kl_t2)  # times T^2
    assert paper["loss"].item() == approx(0.25 * -ln(0.4) + 0.75 * kl_t2)  # no T^2
    assert paper["kd"].item() == approx(kl_t2) and paper["ce"].item() == approx(-ln(0.4))
    # "ours" is the plain function
    fine, s_coarse, t_coarse = student["logits"], student["distill_logits"], teacher["logits"]
    assert torch.equal(ours["loss"], hetero_kd_loss(fine, s_coarse, t_coarse, labels["labels"], 0.25, 2.0))
    with pytest.raises(ValueError, match="convention"):
        hetero(student, teacher, labels, convention="keras")
    # no teacher (evaluation): CE of the prediction head only
    assert hetero(student, None, labels)["loss"].item() == approx(-ln(0.4))


def test_registered_hetero_reproduces_paper_fig9():
    """The Fig. 9 numbers (see test_hetero_kd_paper_fig9_example), through the registry, both conventions."""
    student = {"logits": t([logits_of(0.6, 0.1, 0.1, 0.1, 0.05, 0.05)]),
               "distill_logits": t([logits_of(0.5, 0.3, 0.2)])}
    teacher, labels = {"logits": t([logits_of(0.7, 0.2, 0.1)])}, {"labels": torch.tensor([0])}
    for convention in ("ours", "paper"):
        out = get_loss("hetero")(student, teacher, labels, alpha=0.1, temperature=1.0, convention=convention)
        assert round(out["ce"].item(), 4) == 0.5108 and round(out["kd"].item(), 4) == 0.0851
        assert round(out["loss"].item(), 4) == 0.1277


def test_registered_triple_is_distilbert_triple_loss():
    torch.manual_seed(3)
    B, L, H, V = 2, 4, 6, 7
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    labels = torch.tensor([[3, -100, 1, -100], [-100, 6, -100, -100]])
    student = {"logits": torch.randn(B, L, V), "hidden_states": (torch.randn(B, L, H), torch.randn(B, L, H)),
               "attention_mask": mask}
    teacher = {"logits": torch.randn(B, L, V), "hidden_states": (torch.randn(B, L, H), torch.randn(B, L, H))}
    out = get_loss("triple")(student, teacher, {"labels": labels}, temperature=2.0)
    ref = distilbert_triple_loss(student["logits"], teacher["logits"], labels, student["hidden_states"][-1],
                                 teacher["hidden_states"][-1], mask, 2.0)
    assert {k: v.item() for k, v in out.items()} == {k: v.item() for k, v in ref.items()}
    with pytest.raises(ValueError, match="online teacher"):
        get_loss("triple")(student, None, {"labels": labels})


def test_registered_tinybert_sums_the_layer_losses():
    torch.manual_seed(5)
    B, L, H = 2, 3, 4
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # student: embeddings + 2 layers; teacher: embeddings + 4 layers -> uniform map [1, 3]
    s_h, t_h = [torch.randn(B, L, H) for _ in range(3)], [torch.randn(B, L, H) for _ in range(5)]
    s_a = [torch.rand(B, 2, L, L).softmax(-1) for _ in range(2)]
    t_a = [torch.rand(B, 2, L, L).softmax(-1) for _ in range(4)]
    s_logits, t_logits = torch.randn(B, 3), torch.randn(B, 3)
    student = {"logits": s_logits, "hidden_states": s_h, "attentions": s_a, "attention_mask": mask}
    teacher = {"logits": t_logits, "hidden_states": t_h, "attentions": t_a}
    out = get_loss("tinybert")(student, teacher, {"labels": torch.tensor([0, 1])})
    emb = tinybert_embedding_loss(s_h[0], t_h[0])
    hidden = tinybert_hidden_loss(s_h[1:], t_h[1:], [1, 3])
    attn = tinybert_attention_loss(s_a, t_a, [1, 3], mask)
    assert out["loss"].item() == approx((emb + hidden + attn).item())
    assert out["attn"].item() == approx(attn.item()) and "pred" not in out
    with_pred = get_loss("tinybert")(student, teacher, {}, prediction=True, temperature=2.0)
    assert with_pred["pred"].item() == approx(tinybert_prediction_loss(s_logits, t_logits, 2.0).item())
    assert with_pred["loss"].item() == approx((emb + hidden + attn).item() + with_pred["pred"].item())
