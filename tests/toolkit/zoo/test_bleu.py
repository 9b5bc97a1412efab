from __future__ import annotations

import math

import pytest

from lambdalite.toolkit.zoo.bleu import corpus_bleu, exact_match


def test_identical_corpora_score_one():
    corpus = [["a", "red", "circle", "and", "a", "blue", "square"], ["two", "green", "circles", "and", "a", "dot"]]
    assert corpus_bleu(corpus, corpus) == pytest.approx(1.0)


def test_the_precisions_by_hand():
    hyp = "a red circle and a blue square".split()
    ref = "a red circle and a green square".split()
    # matches/totals for n = 1..4: 6/7, 4/6, 3/5, 2/4; equal lengths, so no brevity penalty.
    expected = (6 / 7 * 4 / 6 * 3 / 5 * 2 / 4) ** 0.25
    assert corpus_bleu([hyp], [ref]) == pytest.approx(expected)


def test_counts_are_clipped_and_summed_over_the_corpus():
    hyps = [["a", "a", "a", "a"], "two red circles and a square".split()]
    refs = [["a", "red", "circle", "a"], "two red circles and a square".split()]
    # 1-grams: "a" x4 clipped to 2, plus 6 of 6 -> 8/10; 2-grams: 0/3 + 5/5; 3: 0/2 + 4/4; 4: 0/1 + 3/3.
    expected = (8 / 10 * 5 / 8 * 4 / 6 * 3 / 4) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)


def test_short_hypotheses_pay_the_brevity_penalty():
    ref = "a red circle and a blue square".split()
    hyp = "a red circle and a blue".split()
    precision = 1.0  # every n-gram of the hypothesis is in the reference
    assert corpus_bleu([hyp], [ref]) == pytest.approx(precision * math.exp(1 - 7 / 6))


def test_no_four_gram_match_scores_zero():
    assert corpus_bleu([["a", "red", "circle"]], [["a", "red", "circle"]]) == 0.0  # no 4-grams at all
    assert corpus_bleu([[]], [["a"]]) == 0.0


def test_exact_match_and_length_checks():
    assert exact_match(["a red circle", "two"], ["a red circle", "three"]) == 0.5
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu([["a"], ["b"]], [["a"]])
