"""The turn log: checksummed lines, torn tails, cutting back to a checkpoint."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ikv_local.history import History, Turn, alternatives, decode_line, encode_line, set_aside


def _turn(n: int, start: int) -> Turn:
    return Turn(n=n, user=f"question {n} ✓", answer=f"answer {n}", start=start, end=start + 10,
                recalled=[{"start": 1, "end": 5, "score": 0.5, "source": "chat", "text": "x"}])


def test_a_line_round_trips_and_any_change_is_refused():
    turn = _turn(1, 0)
    line = encode_line(turn)
    assert decode_line(line) == turn
    assert decode_line(line[:-1]) is None  # torn: no newline
    assert decode_line(line.replace(b"answer 1", b"answer 2")) is None
    assert decode_line(b"\xff\xfe garbage\n") is None


def test_log_reads_back_and_stops_at_a_torn_line(tmp_path):
    log = History(tmp_path)
    for n in range(1, 4):
        log.append(_turn(n, 10 * (n - 1)))
    with open(log.path, "ab") as f:
        f.write(encode_line(_turn(4, 30))[:-7])  # a crash in the middle of a write
    again = History(tmp_path)
    assert [t.n for t in again.turns] == [1, 2, 3]
    again.keep(3, writable=True)  # the torn bytes go, silently: they were never a turn
    assert History(tmp_path).path.read_bytes() == b"".join(encode_line(t) for t in again.turns)
    again.append(_turn(4, 30))
    assert [t.n for t in History(tmp_path).turns] == [1, 2, 3, 4]


def test_turns_past_the_checkpoint_are_cut_with_a_warning(tmp_path):
    log = History(tmp_path)
    for n in range(1, 4):
        log.append(_turn(n, 10 * (n - 1)))
    again = History(tmp_path)
    with pytest.warns(UserWarning, match="1 turn"):
        again.keep(2, writable=True)
    assert len(History(tmp_path)) == 2
    read_only = History(tmp_path)
    read_only.keep(1, writable=False)
    assert len(read_only) == 1 and len(History(tmp_path)) == 2  # nothing cut on disk
    with pytest.raises(ValueError):
        History(tmp_path).keep(5, writable=True)


def test_turn_at_finds_the_turn_holding_a_position(tmp_path):
    log = History(tmp_path)
    for n in range(1, 4):
        log.append(_turn(n, 10 * (n - 1)))
    assert log.turn_at(0).n == 1 and log.turn_at(15).n == 2 and log.turn_at(29).n == 3
    assert log.turn_at(30) is None


def test_pruned_turns_leave_the_log_and_the_rest_keep_their_numbers(tmp_path):
    h = History(tmp_path)
    for n in range(1, 6):
        h.append(_turn(n, 10 * n))
    assert h.drop_before(3) == 2
    again = History(tmp_path)
    assert [t.n for t in again.turns] == [3, 4, 5] and again.last == 5 and again.pruned == 2
    with pytest.warns(UserWarning, match="1 turn"):
        again.keep(4, writable=True)  # a checkpoint names the last turn it covers
    assert [t.n for t in History(tmp_path).turns] == [3, 4]
    empty = History(tmp_path)
    empty.drop_before(5)
    empty = History(tmp_path)
    empty.mark_pruned(4, writable=True)  # every turn pruned: the checkpoint still knows the count
    assert len(empty) == 0 and empty.last == 4
    empty.append(_turn(5, 50))
    assert [t.n for t in History(tmp_path).turns] == [5]


def test_a_turn_taken_back_is_listed_unless_the_log_still_holds_it(tmp_path):
    log = History(tmp_path)
    first = _turn(1, 0)
    log.append(first)
    set_aside(tmp_path, [first], "retry")
    assert alternatives(tmp_path) == []  # a crash between setting it aside and cutting the log
    log.keep(0, writable=False)  # as going back does: the turn goes, with no warning
    log.keep(0, writable=True)
    again = replace(first, answer="another answer")  # a retry in the same second: same n, start, time
    History(tmp_path).append(again)
    assert [(a.turn, a.why) for a in alternatives(tmp_path)] == [(first, "retry")]
    assert alternatives(tmp_path, 2) == []
