"""Pruning: the oldest documents and turns leave the archive and the log; nothing else moves."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time

import numpy as np
import pytest

from ikv_local.chat import Chat, ChatSettings
from ikv_local.errors import IkvError
from ikv_local.haystack import build
from ikv_local.history import alternatives
from ikv_local.ingest import ingest
from ikv_local.paths import using_home
from ikv_local.prune import archived_before, cut_position, parse_date, prune
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session
from tests.conftest import assert_one_line_error, made_once_per_run

GREEDY = ChatSettings(max_tokens=6, params=SamplingParams.greedy())


@pytest.fixture(scope="session")
def two_documents_home(demo_path, tmp_path_factory):
    """Session "p" (window 512) that read two documents, made once per run."""
    def make(home) -> None:
        a, b = home / "a.txt", home / "b.txt"
        a.write_text(build(40, [], [], seed=1).text)
        b.write_text(build(60, [], [], seed=2).text)
        with using_home(home), Session("p", OpenOptions(create=True, n_ctx=512)) as s:
            ingest(s, [a])
            ingest(s, [b])

    return made_once_per_run(tmp_path_factory, "prune-home", make)


@pytest.fixture
def two_documents(two_documents_home, ikv_home) -> None:
    """A copy of session "p" in this test's IKV_HOME."""
    shutil.copytree(two_documents_home / "sessions", ikv_home / "sessions")


@pytest.mark.slow
def test_keep_last_forgets_the_older_document_and_keeps_positions(two_documents, tmp_path):
    with Session("p", OpenOptions()) as s:
        end, before = s.window.stream_end, len(s.archive)
        b_start = cut_position(s, keep_last=1)
        recs = s.archive.records()
        b_first = int(recs["position"][np.flatnonzero(recs["segment"] == 1)[0]])
        assert b_start == b_first > 0
        # what the user is asked to confirm is what the prune forgets
        assert archived_before(s, 0) == 0 and archived_before(s, end) == before
        asked = archived_before(s, b_start)
        result = prune(s, b_start)
        assert result.tokens == asked == int((recs["position"][:before] < b_start).sum()) > 0
        assert result.documents == 1
        assert s.window.stream_end == end  # positions stay where they were
    with Session("p", OpenOptions()) as s:  # reopens consistent
        recs = s.archive.records()
        assert len(recs) == before - result.tokens == s.window.archived
        assert int(recs["position"][0]) == b_start and (np.diff(recs["position"]) == 1).all()
        assert s.index.indexed == len(s.archive)
        assert s.meta.documents[0].pruned_all and not s.meta.documents[1].pruned_all
        # the window keeps rolling on: new records follow the old positions
        extra = tmp_path / "c.txt"
        extra.write_text(build(20, [], [], seed=3).text)
        ingest(s, [extra])
        recs = s.archive.records()
        assert (np.diff(recs["position"]) == 1).all() and len(recs) == s.window.archived


@pytest.mark.slow
def test_a_prune_cut_short_by_a_crash_is_finished_on_the_next_open(two_documents):
    with Session("p", OpenOptions()) as s:
        archived, n = s.window.archived, 300
        s.archive.drop_front(n)  # the archive is replaced; the checkpoint never hears of it
    with Session("p", OpenOptions()) as s:
        assert s.window.archived == archived - n == len(s.archive)
        s.save()
    with Session("p", OpenOptions(writable=False)) as s:
        assert s.window.archived == archived - n


@pytest.mark.slow
def test_turns_before_a_date_leave_the_log_and_the_archive(demo_path):
    with Session("t", OpenOptions(create=True, n_ctx=512)) as s:
        chat = Chat(s, GREEDY)
        filler = build(40, [], [], seed=4).text.split(". ")
        for i in range(6):
            chat.turn(". ".join(filler[3 * i : 3 * i + 3]) + ".")
            if i == 2:
                chat.retry()  # an alternative of turn 3: pruned with it
        time.sleep(1.1)
        mark = dt.datetime.now(dt.UTC)
        time.sleep(1.1)
        while s.window.archived < 400:
            chat.turn(". ".join(filler[3 * i : 3 * i + 3]) + ".")
            i = (i + 1) % 12
        chat.retry()  # an alternative of the last turn: kept
        turns = len(s.history)
    with Session("t", OpenOptions()) as s:
        first_after = next(t for t in s.history.turns if parse_date(t.time) >= mark)
        cut = cut_position(s, before=mark)
        assert cut == first_after.start
        result = prune(s, cut)
        assert result.turns == 6
        assert s.history.turns[0].n == 7
    with Session("t", OpenOptions()) as s:
        assert len(s.history) == turns - 6 and s.history.last == turns
        assert [a.turn.n for a in alternatives(s.folder)] == [turns]
        archive_end = s.window.archived + s.window.dropped
        assert archive_end > cut  # the turns after the mark left the window: some records stay
        assert int(s.archive.records()["position"][0]) == cut and len(s.archive) == archive_end - cut
        turn, _ = Chat(s, GREEDY).turn("One more.")
        assert turn.n == turns + 1


def test_dates_and_choices_are_checked():
    assert parse_date("2026-11-01").tzinfo is not None
    with pytest.raises(IkvError, match="not a date"):
        parse_date("last tuesday")


@pytest.mark.slow
def test_prune_from_the_command_line(two_documents, ikv):
    run = ikv("sessions", "prune", "p")
    assert_one_line_error(run, 2, "--before DATE or --keep-last N")
    run = ikv("sessions", "prune", "p", "--before", "someday", "--yes")
    assert_one_line_error(run, 1, "not a date")
    run = ikv("sessions", "prune", "p", "--keep-last", "1")  # not a terminal
    assert_one_line_error(run, 2, "--yes")
    run = ikv("sessions", "prune", "p", "--keep-last", "1", "--yes", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["tokens"] > 0 and out["documents"] == 1 and out["bytes_after"] < out["bytes_before"]
    run = ikv("sessions", "prune", "p", "--keep-last", "1", "--yes", "--json")
    assert json.loads(run.stdout)["tokens"] == 0  # nothing older is left
