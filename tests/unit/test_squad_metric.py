"""SQuAD exact match / F1 against the rules of the official v1.1 (and v2.0) evaluation scripts,
on cases worked out by hand from those rules."""

from __future__ import annotations

import pytest

from lit_tasks.metrics.squad import SquadScores, exact_match, f1, normalize_answer, score_question, squad_scores


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Denver Broncos", "denver broncos"),  # lower-case, leading article
        ("an apple and a pear", "apple and pear"),  # every whole-word article goes
        ("Theatre, another anthem", "theatre another anthem"),  # ...but not articles inside words
        ("U.S.A.", "usa"),  # punctuation is deleted, not replaced by a space
        ("rock-and-roll", "rockandroll"),
        ("  lots\tof \n space ", "lots of space"),
        ("the (1984) 'film'!", "1984 film"),
        ("A", ""),
        ("Über-Café", "übercafé"),  # only ASCII punctuation is removed; accents stay
    ],
)
def test_normalisation(text, normalised):
    assert normalize_answer(text) == normalised


def test_exact_match_ignores_case_articles_punctuation_and_spaces():
    assert exact_match("the Denver Broncos.", "Denver  Broncos") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    assert exact_match("an elephant", "elephant") == 1.0
    assert exact_match("another elephant", "elephant") == 0.0


def test_f1_is_token_overlap():
    # pred tokens {big, red, ball}, gold {red, ball}: P = 2/3, R = 1 -> F1 = 0.8
    assert f1("the big red ball", "a red ball") == pytest.approx(0.8)
    # counts matter: {cat: 2, dog: 1} vs {cat: 1, dog: 2} share 2 tokens: P = R = 2/3
    assert f1("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)
    assert f1("Denver", "Denver Broncos") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1("Paris", "London") == 0.0
    assert f1("", "London") == 0.0


def test_question_takes_the_best_gold_answer():
    golds = ["Denver Broncos", "The Broncos", "Broncos"]
    assert score_question("broncos!", golds) == (1.0, 1.0)
    em, f = score_question("Denver", golds)
    assert em == 0.0 and f == pytest.approx(2 / 3)  # only "Denver Broncos" overlaps
    em, f = score_question("the Denver Broncos team", golds)
    assert em == 0.0 and f == pytest.approx(0.8)  # P = 2/3, R = 1 against "Denver Broncos"


def test_unanswerable_questions_need_an_empty_prediction():
    assert score_question("", []) == (1.0, 1.0)
    assert score_question("  the ", []) == (1.0, 1.0)  # normalises to nothing
    assert score_question("Denver", []) == (0.0, 0.0)
    assert score_question("", ["Denver"]) == (0.0, 0.0)
    # gold answers that normalise to nothing are dropped (v2.0 script); none left = unanswerable
    assert score_question("", ["the"]) == (1.0, 1.0)
    assert score_question("cat", ["a", "cat"]) == (1.0, 1.0)
    assert score_question("", ["the", "Paris"]) == (0.0, 0.0)  # kept, "the" would match the empty answer
    assert score_question("Paris", ["the", "Paris"]) == (1.0, 1.0)


def test_corpus_scores_in_percent_with_breakdown():
    golds = {"q1": ["Denver Broncos"], "q2": ["Paris"], "q3": [], "q4": []}
    predictions = {"q1": "the denver broncos", "q2": "Paris France", "q3": "", "q4": "London"}
    scores = squad_scores(predictions, golds)
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4)
    assert scores["has_answer_exact_match"] == pytest.approx(50.0)
    assert scores["has_answer_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert scores["no_answer_exact_match"] == pytest.approx(50.0) and scores["no_answer_total"] == 2
    # all answerable (SQuAD v1.1): no breakdown; a missing prediction counts as ""
    v1 = squad_scores({"q1": "Denver Broncos"}, {"q1": ["Denver Broncos"], "q2": ["Paris"]})
    assert v1 == pytest.approx({"exact_match": 50.0, "f1": 50.0})


def test_metric_sums_combine_like_processes():
    """Two metric objects (as two DDP ranks) merged give the scores of one object over all."""
    whole, parts = SquadScores(), [SquadScores(), SquadScores()]
    values = [(1.0, 1.0, True), (0.0, 0.5, True), (1.0, 1.0, False), (0.0, 0.25, True)]
    for i, (em, f, has) in enumerate(values):
        whole.update([em], [f], [has])
        parts[i % 2].update([em], [f], [has])
    parts[0].merge_state(parts[1])  # the metric's own dist_reduce_fx, as across processes
    assert {k: v.item() for k, v in parts[0].compute().items()} == pytest.approx(
        {k: v.item() for k, v in whole.compute().items()})
    assert whole.compute()["f1"].item() == pytest.approx(100 * 2.75 / 4)
