"""Planted facts and how answers are scored against them (pure units, no model)."""

from __future__ import annotations

from ikv_local.haystack import FACT_NEEDLES, build, pass_key_needle


def test_an_answer_names_a_fact_only_as_a_whole_word_or_number():
    key = pass_key_needle(3)
    assert key.named_in(f"The pass key is {key.answer}.")
    assert not key.named_in(f"The pass key is 1{key.answer}.")
    assert not key.named_in(f"The pass key is {key.answer}7")
    assert FACT_NEEDLES[0].named_in(FACT_NEEDLES[0].fact.upper())


def test_a_fact_is_found_in_recalled_text_in_any_case():
    fact = FACT_NEEDLES[0]
    assert fact.found_in(["nothing here", fact.fact.upper()])
    assert not fact.found_in(["nothing here", ""])


def test_needles_land_at_their_depths_and_the_filler_is_seeded():
    needles = [pass_key_needle(1), FACT_NEEDLES[0]]
    hay = build(200, needles, [0.25, 0.75], seed=5)
    at = [hay.text.index(nd.fact) / len(hay.text) for nd in needles]
    assert 0.15 < at[0] < 0.35 and 0.65 < at[1] < 0.85
    assert hay.text == build(200, needles, [0.25, 0.75], seed=5).text
    assert hay.text != build(200, needles, [0.25, 0.75], seed=6).text
