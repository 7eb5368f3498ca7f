"""`ikv chat` as a user runs it: piped turns with --json, a terminal under a pty, kill -9."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import Run, assert_one_line_error, run_ikv

from ikv_local.haystack import build

pytestmark = pytest.mark.slow  # every test here loads a model in child processes or measures

CHAT = [sys.executable, "-c", "from ikv_local.cli import main; main()", "chat"]
FILLER = build(40, [], [], seed=4).text.split(". ")


class Terminal:
    """`ikv chat` on a pseudo-terminal, read until a pattern shows up."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "TERM": "dumb", "COLUMNS": "120"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes ikv
            os.execvpe(sys.executable, [*CHAT, *args], env)
        self.seen = b""
        self.mark = 0

    def expect(self, pattern: str, timeout: float = 120) -> str:
        """Wait for `pattern` in what came after the last match."""
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern.encode(), self.seen[self.mark :])
            if m:
                self.mark += m.end()
                return self.seen.decode(errors="replace")
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    break
        raise AssertionError(f"no {pattern!r} in:\n{self.seen.decode(errors='replace')}")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 60) -> int:
        """The exit code; output is drained meanwhile (a full pty would block the child)."""
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.fd, 65536)
                except OSError:
                    pass
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("ikv chat did not exit")


def _chat(*args: str, lines: list[str], child: bool = False) -> Run:
    return run_ikv("chat", *args, input="\n".join(lines) + "\n", child=child)


def test_piped_turns_with_json_then_resumed_in_another_process(ikv_cache, ikv, ikv_home):
    first = _chat("--session", "p", "-c", "512", "--temp", "0", "-n", "16", "--json",
                  lines=["Please remember this: the vault code is 7316.", "", "/memory",
                         *[". ".join(FILLER[3 * i : 3 * i + 3]) + "." for i in range(12)]])
    assert first.returncode == 0, first.stderr
    objs = [json.loads(line) for line in first.stdout.splitlines()]
    assert [o["turn"] for o in objs] == list(range(1, 14))  # blank lines are not turns
    keys = {"turn", "user", "answer", "recalled", "window_tokens", "archived_tokens",
            "tokens_per_s", "ttft_seconds"}
    assert keys <= objs[0].keys() and objs[0]["user"].startswith("Please remember")
    assert objs[-1]["archived_tokens"] > 512 and "window" in first.stderr  # /memory on stderr
    second = _chat("--session", "p", "--temp", "0", "-n", "16", "--json",
                   lines=["What is the vault code?"], child=True)
    assert second.returncode == 0, second.stderr
    last = json.loads(second.stdout)
    assert last["turn"] == 14 and "7316" in last["answer"]
    assert any("7316" in s["text"] and s["source"] == "chat" for s in last["recalled"])
    shown = json.loads(ikv("sessions", "show", "p", "--json").stdout)
    assert shown["turns"] == 14
    md = ikv("sessions", "export", "p").stdout
    assert "## Turn 14" in md and "What is the vault code?" in md and "recalled" in md
    text = ikv("sessions", "export", "p", "--format", "text").stdout
    assert "the vault code is 7316" in text and FILLER[20] in text  # every token, in order
    assert text.index("vault code is 7316") < text.index(FILLER[20])
    run = ikv("sessions", "reindex", "p", "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["records"] == last["archived_tokens"]


def test_terminal_chat_ctrl_c_stops_an_answer_and_the_session_resumes(ikv_cache, ikv_home):
    term = Terminal("--session", "t", "--temp", "0", "-n", "-1", "-s", "You tell long stories.")
    term.expect(r"new session t")
    term.expect(r"> ")
    term.type("Count from 1 to 300: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,\r")
    term.expect(r"10,\r?\n.*15, 16,")  # the answer is streaming
    term.type("\x03")
    term.expect(r"\[stopped\]")
    term.expect(r"first token")
    term.expect(r"> ")
    term.type("/memory\r")
    term.expect(r"in all.*turns: 1")
    term.expect(r"> ")
    term.type("/system\r")
    term.expect(r"You tell long stories")
    term.expect(r"> ")
    term.type("\x04")
    term.expect(r"resume with: ikv chat --session t")
    assert term.wait() == 0
    again = Terminal("--session", "t", "--temp", "0", "-n", "8")
    again.expect(r"resumed session t")
    again.expect(r"turns: 1")
    again.expect(r"last turn 1: you: Count from 1 to 300")
    again.expect(r"> ")
    again.type("/history\r")
    again.expect(r"\[1\] you: Count from")
    again.expect(r"> ")
    again.type("/exit\r")
    again.expect(r"turns: 1\); resume")
    assert again.wait() == 0


def test_kill_9_during_a_turn_keeps_every_completed_turn(ikv_cache, ikv, ikv_home):
    proc = subprocess.Popen([*CHAT, "--session", "k", "-c", "512", "--temp", "0", "-n", "6",
                             "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    done = []
    for i in range(10):
        proc.stdin.write(". ".join(FILLER[3 * i : 3 * i + 3]) + ".\n")
        proc.stdin.flush()
        done.append(json.loads(proc.stdout.readline()))
    assert done[-1]["archived_tokens"] > 0
    # a pasted turn as long as a question may be in this window (about 180 of 255 tokens): blocks
    # are archived as it is read; the kill lands right after, before the turn's checkpoint
    records = ikv_home / "sessions" / "k" / "archive" / "records.ikv"
    filed = records.stat().st_size
    proc.stdin.write(". ".join(FILLER[:12]) + ".\n")
    proc.stdin.flush()
    deadline = time.time() + 60
    while records.stat().st_size == filed and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = _chat("--session", "k", "--temp", "0", "-n", "16", "--json", lines=["Hello again."])
    assert run.returncode == 0, run.stderr
    assert "archived after the last checkpoint" in run.stderr  # the lost turn's records went
    assert json.loads(run.stdout)["turn"] == 11
    turns = json.loads(ikv("sessions", "export", "k", "--format", "json").stdout)["turns"]
    assert [t["user"] for t in turns[:10]] == [d["user"] for d in done]
    assert [t["answer"].strip() for t in turns[:10]] == [d["answer"] for d in done]


def test_a_second_process_on_a_session_gets_a_clear_message(ikv_cache, ikv, ikv_home):
    term = Terminal("--session", "busy")
    term.expect(r"> ")
    second = _chat("--session", "busy", "--json", lines=["hi"])
    assert_one_line_error(second, 7, "in use by another ikv process (pid", "close it there")
    assert_one_line_error(ikv("ask", "hi", "--session", "busy"), 7, "in use")
    term.type("\x04")
    assert term.wait() == 0
    assert json.loads(ikv("sessions", "show", "busy", "--json").stdout)["turns"] == 0


def test_chat_about_an_ingested_book(ikv_cache, book, ikv_home):
    shutil.copytree(book.home / "sessions" / "book", ikv_home / "sessions" / "book")
    key = book.needles[0]
    run = _chat("--session", "book", "--temp", "0", "-n", "24", "--json", lines=[key.question])
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["turn"] == 1 and key.answer in got["answer"]
    assert any(s["source"].endswith("book.txt") and key.answer in s["text"] for s in got["recalled"])


def test_chat_refuses_bad_input_in_one_line(ikv_cache, ikv, tmp_path):
    run = _chat("--session", "b", "-c", "512", "--temp", "0", "-n", "8", "--json",
                lines=["Hello.", "/system " + "word " * 600, "Never reached."])
    assert len(run.stdout.splitlines()) == 1  # the turn before the refusal was kept
    assert_one_line_error(run, 3, "system prompt of", "512-token window")
    assert json.loads(ikv("sessions", "show", "b", "--json").stdout)["turns"] == 1
    assert_one_line_error(ikv("sessions", "export", "b", "-o", str(tmp_path / "no" / "x.md")), 1,
                          "cannot write")
    assert_one_line_error(ikv("chat", "--session", "../x"), 7, "plain names")
    assert_one_line_error(ikv("chat", str(tmp_path / "missing.gguf")), 2)
    assert_one_line_error(ikv("chat", "-c", "64"), 3, "-c")


def test_piped_bad_bytes_are_read_and_a_too_long_turn_is_refused(ikv_cache, ikv, ikv_home):
    lines = [b"Hello \xff\xfe there.", b"How many? " + b"word " * 3000, b"What is two and two?"]
    run = subprocess.run([*CHAT, "--session", "u", "-c", "512", "--temp", "0", "-n", "8",
                          "--json"], input=b"\n".join(lines) + b"\n", capture_output=True,
                         timeout=300, check=False)
    err = run.stderr.decode()
    assert run.returncode == 0 and "Traceback" not in err, err
    turns = [json.loads(line) for line in run.stdout.splitlines()]
    assert [t["user"] for t in turns] == ["Hello \ufffd\ufffd there.", "What is two and two?"]
    assert "ikv: warning: a line of input is not valid UTF-8: 2 bad byte(s)" in err
    refused = [ln for ln in err.splitlines() if ln.startswith("ikv: error:")]
    assert len(refused) == 1 and "the question is 3,0" in refused[0] and "at most" in refused[0]
    assert json.loads(ikv("sessions", "show", "u", "--json").stdout)["turns"] == 2  # none kept


def test_sigint_and_sigterm_in_a_piped_chat_keep_every_completed_turn(ikv_cache, ikv, ikv_home):
    for sig, code, what in ((signal.SIGTERM, 143, "stopped by SIGTERM"),
                            (signal.SIGINT, 130, "stopped")):
        proc = subprocess.Popen([*CHAT, "--session", "t", "-c", "512", "--temp", "0", "-n", "400",
                                 "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdin and proc.stdout
        proc.stdin.write("Say hello.\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # a turn done and checkpointed
        proc.stdin.write("Tell me a long story about the sea.\n")
        proc.stdin.flush()
        time.sleep(0.1)  # into the second turn (the demo model may answer it in 0.2 s)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        assert "Traceback" not in err
        m = re.fullmatch(rf"ikv: {what}; ([\d,]+) tokens kept up to the last checkpoint",
                         err.strip().splitlines()[-1])
        assert m, err
        shown = json.loads(ikv("sessions", "show", "t", "--json").stdout)
        # exactly the turns it reported: the second one only if it finished before the signal
        assert shown["turns"] == first["turn"] + len(out.splitlines())
        assert shown["tokens"] == int(m.group(1).replace(",", ""))
