"""A scripted conversation of 300+ turns: facts early, questions after the window rolled.

    python scripts/long_chat.py        # writes receipts/long_chat.json

Twenty personal facts are told in the first forty turns, between chatter; chatter goes on
until turn 300 (the window rolls many times); then each fact is asked for, as a chat turn.
Before each question turn the same question is answered on the same window with nothing
recalled (llama.cpp's context shift; then rolled back), and plain llama-cpp-python is timed
on the same turn: the window's tokens already in its cache, the question's prompt decoded,
one token sampled (time to first token without ikv).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time

import llama_cpp

from ikv_local import receipt
from ikv_local.ask import respond
from ikv_local.chat import Chat, ChatSettings
from ikv_local.engine import baseline_loads_as_the_engine
from ikv_local.haystack import filler_sentences
from ikv_local.model_file import resolve_model
from ikv_local.sampling import SamplingParams
from ikv_local.session import OpenOptions, Session

FACTS = [  # (told, asked, answer)
    ("By the way, my sister's name is Ximena.", "What is my sister's name?", "Ximena"),
    ("My dog is called Pickles.", "What is my dog called?", "Pickles"),
    ("The code for my locker is 4172.", "What is the code for my locker?", "4172"),
    ("My favourite colour is teal.", "What is my favourite colour?", "teal"),
    ("I was born in Lisbon.", "Where was I born?", "Lisbon"),
    ("The wifi password at home is marmalade42.", "What is the wifi password at home?", "marmalade42"),
    ("My dentist appointment is on Thursday.", "When is my dentist appointment?", "Thursday"),
    ("My boss is called Mr Hargreaves.", "What is my boss called?", "Hargreaves"),
    ("I am allergic to peanuts.", "What am I allergic to?", "peanuts"),
    ("I drive a Subaru.", "What car do I drive?", "Subaru"),
    ("My favourite book is Moby-Dick.", "What is my favourite book?", "Moby"),
    ("The meeting with the bank is on March 14.", "When is the meeting with the bank?", "March 14"),
    ("My flight number is KL1827.", "What is my flight number?", "KL1827"),
    ("I play the cello in an orchestra.", "What instrument do I play?", "cello"),
    ("My daughter is studying geology.", "What is my daughter studying?", "geology"),
    ("The spare key is under the green flowerpot.", "Where is the spare key?", "flowerpot"),
    ("My grandfather worked as a glassblower.", "What did my grandfather work as?", "glassblower"),
    ("I take my coffee with oat milk.", "How do I take my coffee?", "oat milk"),
    ("My gym is called Ironworks.", "What is my gym called?", "Ironworks"),
    ("My neighbour's parrot is named Captain Bolt.", "What is my neighbour's parrot named?", "Bolt"),
]
OPENERS = ["Let me tell you about my day.", "Here is some news.", "Something happened today.",
           "I heard a story.", "Guess what.", "Listen to this."]


def script(turns: int, seed: int) -> list[str]:
    """User turns: facts at odd turns among the first forty, chatter everywhere else."""
    rng = random.Random(seed)
    sentences = iter(filler_sentences(turns * 3, seed))
    out = []
    facts = iter(FACTS)
    for n in range(1, turns + 1):
        fact = next(facts, None) if n % 2 == 1 and n <= 2 * len(FACTS) else None
        if fact:
            out.append(fact[0])
        else:
            k = rng.randint(2, 3)
            out.append(rng.choice(OPENERS) + " " + " ".join(next(sentences) for _ in range(k)))
    return out


def said(answer: str, text: str) -> bool:
    return re.search(r"\b" + re.escape(answer.lower()) + r"\b", text.lower()) is not None


def plain_ttft(llm: llama_cpp.Llama, window: list[int], prompt: list[int]) -> float:
    """llama-cpp-python with the window already in its cache: prompt decode + one token."""
    llm.reset()
    llm.eval(window)
    t = time.perf_counter()
    llm.eval(prompt)
    llm.sample(temp=0.0)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--ctx-size", type=int, default=2048)
    ap.add_argument("--turns", type=int, default=300, help="turns before the questions")
    ap.add_argument("-n", "--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1, help="picks the chatter and seeds sampling")
    ap.add_argument("--temp", type=float, default=0.8, help="ikv chat's default; 0: greedy")
    ap.add_argument("--system", default="", help="a system prompt for the conversation")
    ap.add_argument("--rounds", type=int, default=1, help="ask every question this many times")
    ap.add_argument("--model", default=None, help="a GGUF (default: the demo model)")
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    model = resolve_model(a.model)
    users = script(a.turns, a.seed)
    threads = os.cpu_count() or 1
    baseline_loads_as_the_engine()  # no AMX buffers (engine.model_params)
    llm = llama_cpp.Llama(str(model), n_ctx=a.ctx_size, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    params = (SamplingParams.greedy() if a.temp <= 0
              else SamplingParams(temperature=a.temp, seed=a.seed))
    settings = ChatSettings(max_tokens=a.max_tokens, params=params)
    rows = []
    chat_ttft: list[float] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ikv-long-chat-") as home:
        os.environ["IKV_HOME"] = home
        with Session("long", OpenOptions(model=str(model), create=True, n_ctx=a.ctx_size, system=a.system)) as s:
            chat = Chat(s, settings)
            for n, text in enumerate(users, 1):
                turn, _ = chat.turn(text)
                chat_ttft.append(turn.ttft_seconds)
                if n % 25 == 0:
                    print(f"turn {n}: {s.window.stream_end:,} tokens, {s.window.archived:,} "
                          f"archived, {time.perf_counter() - t_start:.0f} s", flush=True)
            layout = s.window.layout
            rolls = s.window.archived / layout.recent_capacity
            stream_before = s.window.stream_end
            fmt = s.chat_format
            for told, question, answer in FACTS * a.rounds:
                window = s.window.sink_tokens + s.window.recent.tokens
                base = respond(s, question, fmt.user(question), fmt.stops, recall=False,
                               max_tokens=a.max_tokens, params=params)
                s.rollback()
                prompt = s.engine.tokenize(fmt.user(question), special=True)
                plain = plain_ttft(llm, window, prompt)
                turn, ans = chat.turn(question)
                row = {
                    "fact": told, "question": question, "answer_expected": answer,
                    "told_at_turn": users.index(told) + 1, "asked_at_turn": turn.n,
                    "in_recalled_spans": any(said(answer, sp["text"]) for sp in turn.recalled),
                    "ikv_answer": turn.answer.strip(), "ikv_correct": said(answer, turn.answer),
                    "sliding_answer": base.text.strip(), "sliding_correct": said(answer, base.text),
                    "ikv_ttft_s": turn.ttft_seconds, "ikv_recall_s": turn.recall_seconds,
                    "sliding_ttft_s": round(base.first_token_seconds or 0, 4),
                    "plain_llama_ttft_s": round(plain, 4),
                    "spans": len(turn.recalled),
                }
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("question", "in_recalled_spans",
                                                      "ikv_answer", "sliding_answer")}), flush=True)
            total_tokens = s.window.stream_end
            archive_bytes = s.archive_bytes
    n = len(rows)
    med = lambda key: round(statistics.median(r[key] for r in rows), 4)  # noqa: E731
    results = {
        "n_ctx": a.ctx_size, "chat_turns_before_questions": a.turns, "questions": n,
        "max_tokens": a.max_tokens, "temperature": a.temp, "seed": a.seed, "system": a.system,
        "tokens_before_questions": stream_before, "tokens_in_all": total_tokens,
        "window_rolls": round(rolls, 1),
        "rolls_defined_as": "tokens archived before the questions / recent capacity of the window",
        "recall_contains_fact": round(sum(r["in_recalled_spans"] for r in rows) / n, 3),
        "per_round": [{"round": k + 1,
                       "recall_contains_fact": round(sum(r["in_recalled_spans"] for r in part) / len(part), 3),
                       "ikv_answer_accuracy": round(sum(r["ikv_correct"] for r in part) / len(part), 3)}
                      for k, part in enumerate(rows[i:i + len(FACTS)] for i in range(0, n, len(FACTS)))],
        "ikv_answer_accuracy": round(sum(r["ikv_correct"] for r in rows) / n, 3),
        "sliding_window_answer_accuracy": round(sum(r["sliding_correct"] for r in rows) / n, 3),
        "ttft_median_s": {"ikv_with_recall": med("ikv_ttft_s"), "ikv_recall_part": med("ikv_recall_s"),
                          "same_window_no_recall": med("sliding_ttft_s"),
                          "plain_llama_cpp_python": med("plain_llama_ttft_s")},
        "chat_turn_ttft_median_s": round(statistics.median(chat_ttft), 4),
        "archive_bytes": archive_bytes,
        "seconds": round(time.perf_counter() - t_start, 1),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in results.items() if k != "rows"}, indent=1))
    path = receipt.write("long_chat", results,
                         {"model": model.name, "model_sha256": receipt.file_sha256(model),
                          "script_sha256": hashlib.sha256("\n".join(users).encode()).hexdigest()},
                         "python scripts/long_chat.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    print(f"receipt: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
