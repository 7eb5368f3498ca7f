"""`ikv search` on the real demo model: turns long gone from the window, documents, meaning."""

from __future__ import annotations

import json

import pytest
from conftest import assert_one_line_error

from ikv_local.chat import Chat, ChatSettings
from ikv_local.haystack import build
from ikv_local.ingest import ingest
from ikv_local.sampling import SamplingParams
from ikv_local.search import marks, search
from ikv_local.session import OpenOptions, Session

FILLER = build(60, [], [], seed=8).text.split(". ")
QUIET = ChatSettings(max_tokens=1, params=SamplingParams.greedy(), recall=False)


def test_marks_are_whole_telling_words():
    text = "The northern road: the Vault code, and vaults."
    assert [text[a:b] for a, b in marks(text, "what is the vault code")] == ["Vault", "code"]
    assert marks(text, "the and what") == []


@pytest.mark.slow
def test_a_phrase_from_a_turn_hundreds_of_turns_ago_is_found(ikv):
    with Session("long", OpenOptions(create=True, n_ctx=256)) as s:
        chat = Chat(s, QUIET)
        first, _ = chat.turn("Please remember that my sister's boat is called Silver Heron.")
        for i in range(240):
            chat.turn(FILLER[i % len(FILLER)] + ".")
        assert first.end < s.window.archived + s.window.dropped  # long out of the window
        assert len(s.history) == 241
    done = ikv("search", "silver heron", "--json")
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)["hits"]
    assert hits[0]["where"] == "chat, turn 1" and hits[0]["how"] == "words"
    assert "Silver Heron" in hits[0]["text"]
    marked = [hits[0]["text"][a:b] for a, b in hits[0]["marks"]]
    assert marked == ["Silver", "Heron"]
    assert_one_line_error(ikv("search", "zebra quasar"), 1, "nothing like 'zebra quasar'")
    assert_one_line_error(ikv("search", "heron", "--session", "nope"), 7, "no session named")


@pytest.mark.slow
def test_documents_are_searched_by_words_and_by_meaning(demo_path, tmp_path):
    doc = tmp_path / "notes.txt"
    text = ". ".join(FILLER[:30]) + ". The vault code is 7316. " + ". ".join(FILLER[30:90]) + "."
    doc.write_text(text)
    with Session("docs", OpenOptions(create=True, n_ctx=512)) as s:
        ingest(s, [doc])
        assert s.window.archived > 400
    found = search("vault code is 7316", ["docs"])
    assert found.hits[0].how == "words" and found.hits[0].where == "notes.txt"
    assert "7316" in found.hits[0].text and found.hits[0].date
    # not the phrase: found by the keys and the shared rare words, as recall finds it
    found = search("Which number opens the vault?", ["docs"])
    assert found.hits and found.hits[0].how == "meaning" and "7316" in found.hits[0].text
