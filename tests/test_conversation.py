"""Matching OpenAI-style requests to sessions: pure logic, no model."""

from __future__ import annotations

import pytest

from ikv_local.conversation import (BadRequest, align, branch_name, choose, family,
                                    parse_messages, session_name)
from ikv_local.history import Turn


def msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in pairs]


def log(*pairs: tuple[str, str]) -> list[Turn]:
    return [Turn(i + 1, u, a, 10 * i, 10 * i + 10) for i, (u, a) in enumerate(pairs)]


LOG = log(("u1", "a1"), ("u2", "a2"), ("u3", "a3"))


def test_messages_read_as_system_past_and_question():
    ex = parse_messages(msgs(("system", "Be brief."), ("user", "u1"), ("assistant", "a1"),
                             ("user", "u2"), ("user", "more"),))
    assert ex.system == "Be brief." and ex.past == [("u1", "a1")] and ex.question == "u2\nmore"
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}]
    assert parse_messages(parts).question == "hi there"
    # a client that cut its history before an answer: the orphan answer is skipped
    assert parse_messages(msgs(("assistant", "a0"), ("user", "u1"))).past == []


@pytest.mark.parametrize("bad,why", [
    ([], "non-empty"), ("hi", "non-empty"), (msgs(("user", "u"), ("assistant", "a")), "last message"),
    (msgs(("wizard", "x")), "not supported"), ([{"role": "user", "content": 5}], "content"),
    ([{"role": "user", "content": [{"type": "image_url"}]}], "text parts"),
    (msgs(("user", "u"), ("assistant", "a"), ("assistant", "b"), ("user", "v")), "in a row"),
])
def test_what_a_chat_cannot_continue_is_a_bad_request(bad, why):
    with pytest.raises(BadRequest, match=why):
        parse_messages(bad)


def test_the_name_comes_from_the_beginning_or_the_client_and_ignores_whitespace():
    a = parse_messages(msgs(("system", "S"), ("user", "u1"), ("assistant", "a1"), ("user", "u2")))
    b = parse_messages(msgs(("system", "S "), ("user", " u1"), ("assistant", "x"), ("user", "q")))
    assert session_name(a) == session_name(b) and session_name(a).startswith("api-")
    assert session_name(a, "ann") != session_name(a) and session_name(a, "ann").startswith("api-u-")
    c = parse_messages(msgs(("system", "T"), ("user", "u1")))
    assert session_name(c) != session_name(a)


def test_alignment_append_unseen_truncated_and_diverging():
    m = align("s", [("u1", "a1"), ("u2", "a2"), ("u3", " a3 ")], LOG, 3)
    assert (m.shared, m.upto, m.diverges, m.unseen) == (3, 3, False, [])
    m = align("s", [("u2", "a2"), ("u3", "a3")], LOG, 3)  # the client dropped turn 1
    assert (m.shared, m.upto, m.diverges) == (2, 3, False)
    m = align("s", [("u3", "a3"), ("u4", "a4")], LOG, 3)  # one exchange the log has not seen
    assert (m.upto, m.diverges, m.unseen) == (3, False, [("u4", "a4")])
    m = align("s", [("u1", "a1"), ("x2", "a2")], LOG, 3)  # an edited second message
    assert (m.shared, m.upto, m.diverges, m.unseen) == (1, 1, True, [("x2", "a2")])
    assert align("s", [("zz", "a1")], LOG, 3) is None


def test_a_conversation_goes_on_where_it_does_not_part():
    whole = align("s", [("u1", "a1"), ("u2", "a2")], LOG, 3)  # parts after turn 2
    branch = align("s.b2", [("u1", "a1"), ("u2", "a2")], log(("u1", "a1"), ("u2", "a2")), 2)
    assert choose([whole, None, branch]).session == "s.b2"
    assert choose([whole]).session == "s" and choose([None]) is None


def test_branch_names_and_families():
    assert branch_name("api-x", {"api-x"}) == "api-x.b2"
    assert branch_name("api-x.b2", {"api-x", "api-x.b2"}) == "api-x.b3"
    assert family("api-x", ["api-x", "api-x.b2", "api-xy", "api-x.b10"]) == ["api-x", "api-x.b2",
                                                                            "api-x.b10"]
