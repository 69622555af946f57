"""
Loss functions for knowledge distillation of BERT-style models.

Plain functions on tensors; the only class is the learned projection used by
TinyBERT when student and teacher widths differ.

Conventions (shared by every function here):
- The teacher side is detached inside each loss, so gradients reach the
  student only, whatever the caller passes in.
- Soft-target KD (Hinton et al. 2015) is
      T^2 * KL(softmax(teacher/T) || softmax(student/T)),
  with the KL summed over classes and averaged over the rows of the batch
  ("batchmean"; for token-level losses a row is a token). Implementations
  differ here: TextBrewer drops the T^2 factor and TinyBERT's code averages
  over classes as well. We keep T^2 so gradient magnitudes stay comparable
  across temperatures (the soft-target gradients scale as 1/T^2).
- Hard-label cross-entropy is averaged over the batch and ignores label -100
  (the usual "not a target" marker of HF tokenizers/collators).
- Mixing weight alpha multiplies the hard-label loss:
      loss = alpha * CE(labels) + (1 - alpha) * KD,
  so alpha = 1 means plain fine-tuning without a teacher.
- Hidden states are [B, L, H], attention masks are [B, L] with 1 for real
  tokens, attention probabilities are [B, heads, L, L].
- Layer lists exclude the embedding output: pass hidden_states[1:] from a
  transformers model with output_hidden_states=True. Layer indices are 0-based.

Registry (torchdistill-style, at the end of this file): `LOSSES` maps a name to a
`LossSpec`; `get_loss(name)` looks one up. A registered loss is called as
    loss(student, teacher, labels, **options) -> {"loss": ..., <term>: ...}
on dicts of named tensors: the student's and teacher's outputs ("logits",
"start_logits", "distill_logits", "hidden_states", ...; teacher is None when
there is none) and the gold labels ("labels", "start_positions", ...). The
terms come back detached, for logging and for naming the term that went NaN;
only "loss" carries the graph. Each spec says what it needs: a teacher at all,
and hidden states / attentions, which only an online teacher can give (a loss
on logits alone can read cached teacher outputs).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -100


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _check_same_shape(student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}"
        )


# -----------------------------------------------------------------------------
# Logit-level losses


def soft_target_kd(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton soft-target loss: T^2 * KL(p_teacher^T || p_student^T), batchmean.

    Logits are [..., C]; every leading position counts as one row of the batch.
    """
    _check_temperature(temperature)
    _check_same_shape(student_logits, teacher_logits, "soft_target_kd")
    return temperature**2 * _tempered_kl(student_logits, teacher_logits, temperature)


def _tempered_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher^T || p_student^T), batchmean, without the T^2 factor."""
    t = teacher_logits.detach()
    log_p_t = F.log_softmax(t / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    # KL computed in log space: exact zero when the logits are equal, no log(0)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)
    return kl.mean()


def hard_ce(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with gold labels, mean over non-ignored rows (-100 ignored)."""
    return F.cross_entropy(student_logits, labels, ignore_index=IGNORE_INDEX)


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha * hard_ce + (1 - alpha) * soft_target_kd. alpha=1 means no KD.

    A term with weight 0 is not computed, so teacher_logits may be None at
    alpha=1 and labels may be None at alpha=0.
    """
    return _kd_terms(student_logits, teacher_logits, labels, alpha, temperature)["loss"]


def _kd_terms(student_logits, teacher_logits, labels, alpha: float, temperature: float) -> dict[str, torch.Tensor]:
    """kd_loss with its unweighted parts: {"loss", "ce", "kd"} (a part with weight 0 is absent)."""
    _check_alpha(alpha)
    _check_temperature(temperature)
    loss, terms = None, {}
    if alpha > 0:
        terms["ce"] = hard_ce(student_logits, labels)
        loss = alpha * terms["ce"]
    if alpha < 1:
        terms["kd"] = soft_target_kd(student_logits, teacher_logits, temperature)
        kd = (1.0 - alpha) * terms["kd"]
        loss = kd if loss is None else loss + kd
    return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}


# -----------------------------------------------------------------------------
# DistilBERT (Sanh et al. 2019)


def cosine_hidden_loss(
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """DistilBERT's cosine loss: mean of (1 - cos(s, t)) over unmasked tokens.

    Same as nn.CosineEmbeddingLoss with target +1 on the selected positions.
    Widths must match (DistilBERT keeps the teacher's hidden size).
    """
    _check_same_shape(student_hidden, teacher_hidden, "cosine_hidden_loss")
    t = teacher_hidden.detach()
    if attention_mask is None:
        s, t = student_hidden.flatten(0, -2), t.flatten(0, -2)
    else:
        keep = attention_mask.bool()
        s, t = student_hidden[keep], t[keep]  # [N, H]
    cos = F.cosine_similarity(s, t, dim=-1)
    return (1.0 - cos).mean()


def mlm_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
    """Masked-LM cross-entropy over the vocab; positions labelled -100 are ignored.

    Returns a (graph-connected) zero if no position is a target, instead of the
    NaN that a mean over zero elements would give.
    """
    logits = mlm_logits.reshape(-1, mlm_logits.size(-1))
    labels = mlm_labels.reshape(-1)
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


def distilbert_triple_loss(
    student_mlm_logits: torch.Tensor,
    teacher_mlm_logits: torch.Tensor,
    mlm_labels: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 2.0,
    alpha_ce: float = 5.0,
    alpha_mlm: float = 2.0,
    alpha_cos: float = 1.0,
) -> dict[str, torch.Tensor]:
    """DistilBERT triple loss: alpha_ce*KD + alpha_mlm*MLM + alpha_cos*cosine.

    KD is T^2 * KL batchmean over the real tokens (attention_mask == 1), as in
    DistilBERT's distiller; the default weights and T are DistilBERT's.
    Returns {"loss", "kd", "mlm", "cos"}; only "loss" carries the graph, the
    parts are detached for logging.
    """
    keep = attention_mask.bool()
    # select real tokens first so padding does not dilute the batchmean
    kd = soft_target_kd(student_mlm_logits[keep], teacher_mlm_logits[keep], temperature)
    mlm = mlm_loss(student_mlm_logits, mlm_labels)
    cos = cosine_hidden_loss(student_hidden, teacher_hidden, attention_mask)
    loss = alpha_ce * kd + alpha_mlm * mlm + alpha_cos * cos
    return {"loss": loss, "kd": kd.detach(), "mlm": mlm.detach(), "cos": cos.detach()}


# -----------------------------------------------------------------------------
# TinyBERT (Jiao et al. 2020)


class HiddenProjection(nn.Module):
    """Learned linear map from student width to teacher width (TinyBERT's W_h).

    Only needed when widths differ; with equal widths pass proj=None.
    """

    def __init__(self, student_dim: int, teacher_dim: int, init_std: float = 0.02):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)
        # BERT's initializer_range; TinyBERT's projection goes through BERT's init
        nn.init.normal_(self.proj.weight, mean=0.0, std=init_std)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def uniform_layer_map(n_student: int, n_teacher: int) -> list[int]:
    """TinyBERT's uniform mapping g(m) = m * N / M, returned 0-based.

    Student layer m (1-based) learns from teacher layer m*N/M (1-based), e.g.
    4 of 12 -> teacher layers 3, 6, 9, 12 -> [2, 5, 8, 11]. Floors when N/M is
    not an integer; the last student layer always maps to the last teacher layer.
    """
    if not 0 < n_student <= n_teacher:
        raise ValueError(f"need 0 < n_student <= n_teacher, got {n_student} and {n_teacher}")
    return [(m * n_teacher) // n_student - 1 for m in range(1, n_student + 1)]


def _project(x: torch.Tensor, proj: nn.Module | None, teacher_width: int) -> torch.Tensor:
    if proj is not None:
        x = proj(x)
    if x.size(-1) != teacher_width:
        raise ValueError(
            f"student width {x.size(-1)} != teacher width {teacher_width}; pass a HiddenProjection"
        )
    return x


def _check_layer_map(n_student: int, n_teacher: int, layer_map: Sequence[int]) -> None:
    if len(layer_map) != n_student:
        raise ValueError(f"layer_map has {len(layer_map)} entries for {n_student} student layers")
    if any(not 0 <= j < n_teacher for j in layer_map):
        raise ValueError(f"layer_map {list(layer_map)} out of range for {n_teacher} teacher layers")


def tinybert_embedding_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, proj: nn.Module | None = None
) -> torch.Tensor:
    """TinyBERT embedding-layer loss: MSE(proj(E_s), E_t), mean over elements."""
    t = teacher_emb.detach()
    return F.mse_loss(_project(student_emb, proj, t.size(-1)), t)


def tinybert_hidden_loss(
    student_hiddens: Sequence[torch.Tensor],
    teacher_hiddens: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    proj: nn.Module | None = None,
) -> torch.Tensor:
    """TinyBERT hidden-state loss: sum_i MSE(proj(H_s[i]), H_t[layer_map[i]]).

    One projection is shared by all layers, as in TinyBERT's code.
    """
    _check_layer_map(len(student_hiddens), len(teacher_hiddens), layer_map)
    loss = 0.0
    for s, j in zip(student_hiddens, layer_map):
        t = teacher_hiddens[j].detach()
        loss = loss + F.mse_loss(_project(s, proj, t.size(-1)), t)
    return loss


def tinybert_attention_loss(
    student_attentions: Sequence[torch.Tensor],
    teacher_attentions: Sequence[torch.Tensor],
    layer_map: Sequence[int],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyBERT attention loss: sum over mapped layers of elementwise MSE.

    TinyBERT matches pre-softmax attention scores; transformers models return
    post-softmax probabilities ([B, heads, L, L]), which is what we match here.
    Head counts must agree (no averaging over heads). With attention_mask the
    mean runs over (query, key) pairs where both tokens are real.
    """
    _check_layer_map(len(student_attentions), len(teacher_attentions), layer_map)
    pair_mask = None
    if attention_mask is not None:
        m = attention_mask.to(student_attentions[0].dtype)
        pair_mask = m[:, None, :, None] * m[:, None, None, :]  # [B, 1, L, L]
    loss = 0.0
    for s, j in zip(student_attentions, layer_map):
        t = teacher_attentions[j].detach()
        if s.size(1) != t.size(1):
            raise ValueError(
                f"attention head mismatch: student has {s.size(1)} heads, teacher has {t.size(1)}"
            )
        _check_same_shape(s, t, "tinybert_attention_loss")
        sq = (s - t) ** 2
        if pair_mask is None:
            loss = loss + sq.mean()
        else:
            w = pair_mask.expand_as(sq)
            loss = loss + (sq * w).sum() / w.sum()
    return loss


def tinybert_prediction_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """TinyBERT prediction-layer loss: soft cross-entropy, batch mean, no T^2.

    -sum_c softmax(t/T)_c * log_softmax(s/T)_c, averaged over rows. (TinyBERT's
    code also averages over classes; we sum, as in the paper's formula.)
    """
    _check_temperature(temperature)
    _check_same_shape(student_logits, teacher_logits, "tinybert_prediction_loss")
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    return -(p_t * log_p_s).sum(dim=-1).mean()


# -----------------------------------------------------------------------------
# Heterogeneous KD (Yu & Kim 2022)


def hetero_kd_loss(
    student_fine_logits: torch.Tensor,
    student_coarse_logits: torch.Tensor,
    teacher_coarse_logits: torch.Tensor,
    fine_labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Heterogeneous KD: alpha * CE(fine) + (1 - alpha) * KD(coarse).

    The teacher only knows the C coarse labels, so the student carries two
    heads: a fine prediction head trained on gold labels and a separate
    distillation head over the coarse labels that follows the teacher.
    """
    _check_alpha(alpha)
    _check_temperature(temperature)
    student_loss = hard_ce(student_fine_logits, fine_labels)
    distill_loss = soft_target_kd(student_coarse_logits, teacher_coarse_logits, temperature)
    return alpha * student_loss + (1.0 - alpha) * distill_loss


# -----------------------------------------------------------------------------
# Registry of named losses over dicts of outputs


@dataclass(frozen=True)
class LossSpec:
    """A registered loss and what it needs from the models."""

    name: str
    fn: Callable[..., dict[str, torch.Tensor]]
    needs_teacher: bool = False
    hidden_states: bool = False  # of student and teacher (online teacher only)
    attentions: bool = False  # of student and teacher (online teacher only)

    @property
    def cacheable(self) -> bool:
        """True if precomputed teacher outputs (logits) are all the teacher part needs."""
        return self.needs_teacher and not (self.hidden_states or self.attentions)

    @property
    def options(self) -> frozenset[str]:
        """The keyword options the loss takes (after student, teacher, labels)."""
        return frozenset(list(inspect.signature(self.fn).parameters)[3:])

    def __call__(self, student, teacher, labels, **options) -> dict[str, torch.Tensor]:
        return self.fn(student, teacher, labels, **options)


LOSSES: dict[str, LossSpec] = {}


def register(name: str, *, teacher: bool = False, hidden_states: bool = False, attentions: bool = False):
    """Decorator: add fn(student, teacher, labels, **options) to LOSSES under `name`."""

    def add(fn):
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is registered twice")
        LOSSES[name] = LossSpec(name, fn, teacher, hidden_states, attentions)
        return fn

    return add


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


# Which gold labels go with which logits.
LABEL_OF = {"logits": "labels", "start_logits": "start_positions", "end_logits": "end_positions"}


def _prediction_keys(outputs: dict) -> tuple[str, ...]:
    """The outputs that predict the gold labels: start and end for extractive QA, else logits."""
    return ("start_logits", "end_logits") if "start_logits" in outputs else ("logits",)


def _mean_terms(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Average term by term (QA's start and end, as BertForQuestionAnswering and HF's run_squad do)."""
    if len(parts) == 1:
        return parts[0]
    return {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]}


@register("ce")
def ce(student, teacher, labels):
    """Hard-label cross-entropy of the prediction outputs; no teacher."""
    parts = []
    for key in _prediction_keys(student):
        loss = hard_ce(student[key], labels[LABEL_OF[key]])
        parts.append({"loss": loss, "ce": loss.detach()})
    return _mean_terms(parts)


@register("soft_target", teacher=True)
def soft_target(student, teacher, labels, alpha: float = 0.5, temperature: float = 1.0):
    """alpha * CE + (1 - alpha) * T^2 * KL (= kd_loss), on each prediction output, averaged.

    Without teacher outputs, or at alpha = 1, plain CE (what the trainer has always done).
    """
    _check_alpha(alpha)
    _check_temperature(temperature)
    if teacher is None or alpha == 1:
        return ce(student, None, labels)
    return _mean_terms([_kd_terms(student[k], teacher[k], labels.get(LABEL_OF[k]), alpha, temperature)
                        for k in _prediction_keys(student)])


@register("hetero", teacher=True)
def hetero(student, teacher, labels, alpha: float = 0.5, temperature: float = 1.0, convention: str = "ours"):
    """Heterogeneous KD: CE of the prediction head (`logits`, fine labels) with the gold labels, plus KD
    between the distillation head (`distill_logits`) and the teacher's `logits` (coarse labels).

    convention "ours":  alpha * CE + (1 - alpha) * T^2 * KL  (= hetero_kd_loss)
    convention "paper": alpha * CE + (1 - alpha) * KL, no T^2 (seed 003; at T=1 both agree: its Fig. 9
                        gives 0.1 * 0.5108 + 0.9 * 0.0851 = 0.1277)
    Without a teacher, CE alone.
    """
    if convention not in ("ours", "paper"):
        raise ValueError(f"convention must be 'ours' or 'paper', not {convention!r}")
    _check_alpha(alpha)
    _check_temperature(temperature)
    ce_ = hard_ce(student["logits"], labels["labels"])
    if teacher is None:
        return {"loss": ce_, "ce": ce_.detach()}
    s, t = student["distill_logits"], teacher["logits"]
    if convention == "ours":
        kd = soft_target_kd(s, t, temperature)
    else:
        _check_same_shape(s, t, "hetero")
        kd = _tempered_kl(s, t, temperature)
    loss = alpha * ce_ + (1.0 - alpha) * kd
    return {"loss": loss, "ce": ce_.detach(), "kd": kd.detach()}


def _require_teacher(name: str, teacher) -> None:
    if teacher is None:
        raise ValueError(f"loss {name!r} needs the teacher's hidden states: run it with an online teacher")


@register("triple", teacher=True, hidden_states=True)
def triple(student, teacher, labels, temperature: float = 2.0, alpha_ce: float = 5.0, alpha_mlm: float = 2.0,
           alpha_cos: float = 1.0):
    """DistilBERT's triple loss on masked-LM outputs: `logits` [B, L, V], labels["labels"] the MLM
    labels, cosine between the last hidden layers over the real tokens (student["attention_mask"])."""
    _require_teacher("triple", teacher)
    return distilbert_triple_loss(student["logits"], teacher["logits"], labels["labels"],
                                  student["hidden_states"][-1], teacher["hidden_states"][-1],
                                  student["attention_mask"], temperature, alpha_ce, alpha_mlm, alpha_cos)


@register("tinybert", teacher=True, hidden_states=True, attentions=True)
def tinybert(student, teacher, labels, layer_map: Sequence[int] | None = None, proj: nn.Module | None = None,
             prediction: bool = False, temperature: float = 1.0):
    """TinyBERT's intermediate-layer loss: embeddings + mapped hidden states + mapped attentions
    (+ the prediction-layer loss with prediction=True).

    hidden_states include the embedding output first (transformers' layout). layer_map defaults to
    the uniform map. A `proj` (HiddenProjection) must be a submodule of the student so that the
    optimiser trains it.
    """
    _require_teacher("tinybert", teacher)
    s_h, t_h = student["hidden_states"], teacher["hidden_states"]
    layer_map = list(layer_map) if layer_map is not None else uniform_layer_map(len(s_h) - 1, len(t_h) - 1)
    terms = {
        "emb": tinybert_embedding_loss(s_h[0], t_h[0], proj),
        "hidden": tinybert_hidden_loss(s_h[1:], t_h[1:], layer_map, proj),
        "attn": tinybert_attention_loss(student["attentions"], teacher["attentions"], layer_map,
                                        student.get("attention_mask")),
    }
    if prediction:
        keys = _prediction_keys(student)
        terms["pred"] = sum(tinybert_prediction_loss(student[k], teacher[k], temperature) for k in keys) / len(keys)
    loss = sum(terms.values())
    return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
