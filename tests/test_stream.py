"""An answer's text from token bytes: UTF-8 across pieces, stop strings held back and cut (no model)."""

from __future__ import annotations

import pytest

from ikv_local.stream import AnswerText


def shown(answer: AnswerText, pieces: list[bytes]) -> list[str]:
    """What a reader is shown after each piece, then at the end (empty ones included)."""
    out = []
    for piece in pieces:
        out.append(answer.feed(piece))
        if answer.stopped:
            break
    out.append(answer.finish())
    return out


def test_a_character_split_across_pieces_is_shown_once_it_is_whole():
    snow = "雪".encode()  # three bytes
    answer = AnswerText(())
    assert shown(answer, [b"a" + snow[:1], snow[1:2], snow[2:] + b"b"]) == ["a", "", "雪b", ""]
    assert answer.text == "a雪b" and not answer.stopped


def test_a_character_cut_off_by_the_end_is_flushed_as_a_replacement():
    answer = AnswerText(())
    assert shown(answer, [b"ok ", "é".encode()[:1]]) == ["ok ", "", "\ufffd"]
    assert answer.text == "ok \ufffd"


def test_a_stop_string_split_across_pieces_is_held_back_then_cut():
    answer = AnswerText(("\nQuestion:",))
    assert shown(answer, [b" 42.", b"\nQu", b"est", b"ion: and"]) == [" 42.", "", "", "", ""]
    assert answer.text == " 42." and answer.stopped


def test_a_stop_string_never_completed_is_shown_at_the_end():
    answer = AnswerText(("\nQuestion:",))
    assert shown(answer, [b"a\nQu", b"est"]) == ["a", "", "\nQuest"]
    assert answer.text == "a\nQuest" and not answer.stopped


def test_held_back_text_is_let_go_as_soon_as_it_cannot_begin_a_stop_string():
    answer = AnswerText(("\nQuestion:",))
    assert shown(answer, [b"a\nQu", b"ick"]) == ["a", "\nQuick", ""]


def test_the_earliest_stop_string_cuts_and_the_rest_of_its_piece_is_dropped():
    answer = AnswerText(("\nUser:", "END"))
    assert shown(answer, [b"one END two\nUser: x", b"never read"]) == ["one ", ""]
    assert answer.text == "one "


def test_a_stop_string_made_of_multi_byte_characters_split_mid_character():
    stop = "…終"
    raw = ("x" + stop + "y").encode()
    answer = AnswerText((stop,))
    pieces = [raw[i : i + 1] for i in range(len(raw))]  # one byte at a time
    assert "".join(shown(answer, pieces)) == "x" and answer.text == "x" and answer.stopped


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_what_is_shown_adds_up_to_the_answer_whatever_the_pieces(size):
    text = "Réponse: 東京 🎉 fin\nQuestion: next"
    raw = text.encode()
    answer = AnswerText(("\nQuestion:",))
    got = "".join(shown(answer, [raw[i : i + size] for i in range(0, len(raw), size)]))
    assert got == answer.text == "Réponse: 東京 🎉 fin"


def test_without_stop_strings_nothing_is_held_back():
    answer = AnswerText(())
    assert shown(answer, [b"\nQu", b"estion:"]) == ["\nQu", "estion:", ""]


def test_a_paragraph_answer_ends_at_the_first_blank_line_after_some_text():
    answer = AnswerText(("\nQuestion:",), paragraph=True)
    pieces = [b"\n\n", b" 1234", b".\n", b"\n* What", b" is the code?\nAnswer: 1234."]
    assert shown(answer, pieces) == ["\n", "\n 1234", ".", "", ""]  # "\n" could begin "\nQuestion:"
    assert answer.text == "\n\n 1234." and answer.stopped


def test_a_single_line_break_inside_a_paragraph_answer_is_shown_once_it_cannot_be_a_blank_line():
    answer = AnswerText((), paragraph=True)
    assert shown(answer, [b"one\n", b"two", b"\n"]) == ["one", "\ntwo", "", "\n"]
    assert answer.text == "one\ntwo\n" and not answer.stopped


def test_without_paragraph_a_blank_line_is_part_of_the_answer():
    answer = AnswerText(())
    assert shown(answer, [b"one\n\n", b"two"]) == ["one\n\n", "two", ""]


def test_the_space_before_a_streamed_answer_is_dropped_once():
    from ikv_local.stream import FirstTextTrimmed

    trim = FirstTextTrimmed()
    assert [trim(c) for c in (" ", "  The", " cat", " sat.")] == ["", "The", " cat", " sat."]
