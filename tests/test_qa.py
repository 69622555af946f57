"""SQuAD v1.1 metric, windows and answer extraction (kdlib/core/squad.py), against hand-computed cases."""
import json

import numpy as np
import pytest

from kdlib.core import squad

REFS = {"q1": ["Denver Broncos"], "q2": ["Santa Clara", "Levi's Stadium in Santa Clara"]}
PREDS = {"q1": "the Denver Broncos", "q2": "Levi's Stadium"}


def test_normalisation_lowercases_and_drops_punctuation_articles_and_spaces():
    assert squad.normalize_answer("  The  Quick, brown fox!  ") == "quick brown fox"
    assert squad.normalize_answer("An apple a day") == "apple day"
    assert squad.normalize_answer("Levi's") == "levis"
    assert squad.normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_partial_overlap_f1():
    assert squad.exact_match("the Denver Broncos", "Denver Broncos") == 1.0
    # {denver, broncos, won} vs {denver, broncos}: precision 2/3, recall 1 -> F1 0.8
    assert squad.f1("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    assert squad.f1("Carolina Panthers", "Denver Broncos") == 0.0
    # repeated tokens count once per match: {a: 2} & {a: 1} -> 1 common of 2 predicted
    assert squad.f1("x x", "x") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_scores_take_the_maximum_over_references():
    s = squad.squad_scores(PREDS, REFS)
    # q1 exact; q2 vs the second reference: precision 1, recall 2/5 -> F1 4/7
    assert s["exact_match"] == pytest.approx(50.0)
    assert s["f1"] == pytest.approx(100 * (1 + 4 / 7) / 2)
    first = squad.squad_scores(PREDS, REFS, first_reference_only=True)
    assert first["f1"] == pytest.approx(50.0)  # q2 then scores 0
    assert squad.squad_scores({}, REFS) == {"exact_match": 0.0, "f1": 0.0}


def test_gap_analysis_without_normalisation():
    rows = {r["evaluation"]: r for r in squad.gap_analysis(PREDS, REFS)}
    raw = rows["no normalisation"]
    # q1: "the Denver Broncos" != "Denver Broncos"; F1 on raw tokens 0.8. q2: raw F1 vs 2nd ref: 2 of
    # ["Levi's", "Stadium"] in 5 tokens -> 4/7.
    assert raw["exact_match"] == 0.0
    assert raw["f1"] == pytest.approx(100 * (0.8 + 4 / 7) / 2)
    assert rows["official (normalised, max over references)"]["gap"] == pytest.approx(100 * (1 + 4 / 7) / 2 - 50)


def test_same_numbers_twice_on_saved_predictions(tmp_path):
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(PREDS))
    first = squad.gap_analysis(json.loads(path.read_text()), REFS)
    second = squad.gap_analysis(json.loads(path.read_text()), REFS)
    assert first == second


@pytest.fixture(scope="module")
def tk():
    from kdlib.core.models import load_tokenizer

    return squad.window_tokenizer(load_tokenizer("minilm"), max_length=32, stride=8)


CONTEXT = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region "
           "in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, "
           "under their leader Rollo, agreed to swear fealty to King Charles III of West Francia.")


def test_windows_overlap_and_cover_the_context(tk):
    windows = squad.encode_windows(tk, ["Who led the Norse raiders?"], [CONTEXT])
    assert len(windows) > 2 and all(len(w.input_ids) <= 32 for w in windows)
    spans = [[o for o in w.offsets if o is not None] for w in windows]
    for a, b in zip(spans, spans[1:]):
        assert a[-8:] == b[:8]  # consecutive windows share `stride` context tokens
    assert spans[0][0][0] == 0 and spans[-1][-1][1] == len(CONTEXT.rstrip())
    assert all(w.token_type_ids[w.offsets.index(next(o for o in w.offsets if o))] == 1 for w in windows)


def test_gold_token_span_recovers_the_answer_text(tk):
    answer = "King Charles III of West Francia"
    example = {"question": "Who did they swear fealty to?", "context": CONTEXT,
               "answers": {"text": [answer], "answer_start": [CONTEXT.index(answer)]}}
    rows = squad.training_rows([example], tk)
    windows = squad.encode_windows(tk, [example["question"]], [CONTEXT])
    hits = 0
    for w, s, e in zip(windows, rows["start_positions"], rows["end_positions"]):
        if (s, e) == (0, 0):
            continue
        hits += 1
        assert CONTEXT[w.offsets[s][0]:w.offsets[e][1]] == answer
    assert hits >= 1
    assert (0, 0) in zip(rows["start_positions"], rows["end_positions"])  # windows without the answer


def test_best_span_skips_invalid_spans_and_respects_max_length():
    offsets = [None, None, (0, 3), (4, 9), (10, 15), (16, 20), None]
    start = np.array([9.0, 0, 1, 5, 0, 0, 0])  # the best start is [CLS]: not in the context
    end = np.array([9.0, 0, 0, 0, 1, 6, 0])
    assert squad.best_span(start, end, offsets, max_answer_length=30) == (11.0, 4, 20)  # tokens 3..5
    assert squad.best_span(start, end, offsets, max_answer_length=2) == (6.0, 4, 15)  # 3..4: at most 2 tokens
    # an end before every valid start: no valid span
    assert squad.best_span(np.array([0, 0, 0, 0, 0, 9.0, 0]), np.array([0, 0, 9.0, 0, 0, 0, 0]),
                        offsets, n_best=1) is None


def test_extraction_takes_the_best_window_of_each_question():
    w = lambda q, offsets: squad.Window(q, [0] * len(offsets), [0] * len(offsets), [1] * len(offsets), offsets)
    windows = [w(0, [None, (0, 4), (5, 8)]), w(0, [None, (5, 8), (9, 12)]), w(1, [None, None])]
    contexts = ["abcd efg hij", "xyz"]
    starts = [np.array([0, 2.0, 0]), np.array([0, 0, 3.0]), np.array([0, 0.0])]
    ends = [np.array([0, 2.0, 0]), np.array([0, 0, 3.0]), np.array([0, 0.0])]
    assert squad.extract_answers(windows, contexts, starts, ends) == ["hij", ""]


def test_baselines_are_deterministic():
    ex = [{"id": "a", "context": "One two. Three four five.", "answers": {"text": ["x"]}}]
    assert squad.first_sentence_baseline(ex) == {"a": "One two."}
    assert squad.random_span_baseline(ex, seed=1) == squad.random_span_baseline(ex, seed=1)
