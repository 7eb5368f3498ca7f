"""Recall on real prose: 16 planted facts asked in their own words and in other words.

    python scripts/recall_prose.py                   # writes receipts/recall_prose.json
    python scripts/recall_prose.py --spans-only      # recall alone (no answers), for tuning

The prose is the licence texts every Debian-based system ships in /usr/share/common-licenses,
in a fixed order, cut to 4, 16 and 32 times the window. Sixteen facts about made-up people and
places are planted at evenly spread depths, each at the end of a paragraph. For every fact
both questions are searched ("fact in the recalled spans": the fact's key phrase is inside the
spans the slot would get; facts still in the window are not counted). Answers are asked for
half the facts in their own words and half in other words: with recall as `ikv ask` does it,
with the recalled text in the recall slot (as a chat turn holds it) and right before the
question (where `ikv ask` reads it for a model without a chat template), with the sliding
window alone (`--no-recall`) and, where the model's trained
context holds the whole document, with the whole document in the window. Each signal of
recall's scoring is measured alone and together on the spans (SIGNALS).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ikv_local import receipt
from ikv_local.ask import ask, recall_spans
from ikv_local.ingest import ingest
from ikv_local.model_file import packaged_models
from ikv_local.recall import RecallSettings
from ikv_local.session import OpenOptions, Session

LICENCES = Path("/usr/share/common-licenses")
TEXTS = ("GPL-3", "GPL-2", "LGPL-2.1", "GFDL-1.3", "MPL-2.0", "LGPL-2", "MPL-1.1", "Apache-2.0",
         "GPL-1", "Artistic", "CC0-1.0", "LGPL-3", "BSD")


# each signal alone and together, against the defaults (NAME:FIELD=VALUE,...)
SIGNALS = ("keys:lexical=0,rare_hits=0", "keys+rarity:lexical=0,rare_hits=0,rarity=1",
           "keys+lexical:lexical=0.5,rare_hits=0", "keys+rare_hits:lexical=0,rare_hits=8",
           "lexical1.0:lexical=1", "before:lexical=0.25,rare_hits=0", "keep0.8:keep_ratio=0.8")


@dataclass(frozen=True)
class Fact:
    text: str  # planted as the last sentence of a paragraph
    key: str  # found in the recalled text when the fact was recalled
    answers: tuple[str, ...]  # any one in the answer names the fact
    same: str  # asked in the fact's words
    other: str  # asked in other words


FACTS = (
    Fact("Marta always stores her red bicycle in the shed behind the bakery.", "shed behind the bakery",
         ("shed", "bakery"), "Where does Marta always store her red bicycle?",
         "Where does Marta put her bike?"),
    Fact("The lighthouse on Korvel Island was painted green in 1911.", "painted green",
         ("green",), "What colour was the lighthouse on Korvel Island painted in 1911?",
         "Which colour did the Korvel beacon get?"),
    Fact("Doctor Ilse Brandt keeps the spare key to the archive under a blue flowerpot.",
         "under a blue flowerpot", ("flowerpot", "flower pot"),
         "Where does Doctor Ilse Brandt keep the spare key to the archive?",
         "Where can one find Ilse Brandt's extra key?"),
    Fact("The village of Tressing holds its cheese market every second Thursday.",
         "every second Thursday", ("thursday",),
         "When does the village of Tressing hold its cheese market?",
         "On which day do people in Tressing come together to sell cheese?"),
    Fact("Captain Oduya named her sailing boat the Silver Heron.", "the Silver Heron",
         ("heron",), "What did Captain Oduya name her sailing boat?",
         "What is Oduya's yacht called?"),
    Fact("The Falkenberg observatory measures the rainfall with a copper gauge on its roof.",
         "copper gauge", ("copper", "gauge"),
         "What does the Falkenberg observatory measure the rainfall with?",
         "Which instrument tells Falkenberg how much rain came down?"),
    Fact("Pelle Andersson learned to play the cello from his grandmother in Uppsala.",
         "from his grandmother", ("grandmother", "grandma"),
         "Who did Pelle Andersson learn to play the cello from?",
         "Who taught Pelle Andersson his instrument?"),
    Fact("The Quillon bridge was closed for repairs because of a cracked pillar.",
         "a cracked pillar", ("pillar",), "Why was the Quillon bridge closed for repairs?",
         "What made them shut the Quillon crossing?"),
    Fact("Nadia Osei feeds her three cats fresh sardines every Sunday morning.", "fresh sardines",
         ("sardine",), "What does Nadia Osei feed her three cats every Sunday morning?",
         "Which fish do Nadia Osei's pets get at the weekend?"),
    Fact("The Brennholt mill grinds barley with a waterwheel built by monks.",
         "a waterwheel built by monks", ("waterwheel", "water wheel"),
         "What does the Brennholt mill grind barley with?", "What powers the Brennholt mill?"),
    Fact("Tomasz Wilk buried the time capsule under the old oak in the school yard.",
         "under the old oak", ("oak", "school"), "Where did Tomasz Wilk bury the time capsule?",
         "Where is the box that Tomasz Wilk hid for the future?"),
    Fact("The Zephyrine choir sings only in Latin during the winter festival.", "only in Latin",
         ("latin",), "In which language does the Zephyrine choir sing during the winter festival?",
         "What tongue do the Zephyrine singers use at the December celebration?"),
    Fact("Farmer Hollis grows purple carrots on the hill beside the quarry.", "purple carrots",
         ("carrot",), "What does Farmer Hollis grow on the hill beside the quarry?",
         "Which vegetable does Hollis raise near the quarry?"),
    Fact("The museum in Ostrava displays a meteorite that fell on a potato field.",
         "displays a meteorite", ("meteorite",), "What does the museum in Ostrava display?",
         "What rock from space can visitors see in Ostrava?"),
    Fact("Yusuf Demir repairs old radios in a workshop above the train station.",
         "above the train station", ("station",), "Where does Yusuf Demir repair old radios?",
         "Where is Yusuf Demir's place of work?"),
    Fact("The kite race at Merrow Beach was won by a twelve-year-old girl named Ada.",
         "twelve-year-old girl named Ada", ("ada", "girl"),
         "Who won the kite race at Merrow Beach?", "Who came first in the Merrow contest?"),
)


def prose_paragraphs() -> list[str]:
    out = []
    for name in TEXTS:
        text = (LICENCES / name).read_text(encoding="utf-8", errors="replace")
        out += [p.strip() for p in text.split("\n\n") if len(p.split()) >= 8]
    return out


def document(paragraphs: list[str], n_tokens: int, tokenize: Callable[[str], list[int]]) -> str:
    """About `n_tokens` of prose with the facts planted at evenly spread depths."""
    taken, total = [], 0
    for p in paragraphs:
        if total >= n_tokens:
            break
        taken.append(p)
        total += len(tokenize(p)) + 1
    if total < n_tokens:
        raise SystemExit(f"only {total} tokens of prose; ask for a smaller document")
    for i, fact in enumerate(FACTS):  # depth (i + 0.5) / 16 of the paragraphs
        at = min(len(taken) - 1, int((i + 0.5) / len(FACTS) * len(taken)))
        taken[at] = f"{taken[at]} {fact.text}"
    return "\n\n".join(taken) + "\n"


def named(answer: str, fact: Fact) -> bool:
    low = answer.lower()
    return any(re.search(r"\b" + re.escape(a), low) for a in fact.answers)


def _models(chosen: list[str]) -> list[str]:
    return chosen or [str(p) for p in packaged_models()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="a GGUF (default: both test models)")
    ap.add_argument("-c", "--ctx-size", type=int, default=1024)
    ap.add_argument("--times", default="4,16,32", help="document sizes, in windows")
    ap.add_argument("-n", "--max-tokens", type=int, default=32)
    ap.add_argument("--spans-only", action="store_true", help="recall alone, no answers")
    ap.add_argument("--full-max", type=int, default=20480, help="largest whole-document context")
    ap.add_argument("--home", default=None, help="keep the ingested sessions here (reused)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:FIELD=V,...",
                    help="recall settings to compare on the spans (answers use the defaults)")
    ap.add_argument("--answer-variant", action="append", default=None, metavar="NAME",
                    help="also answer with this variant's settings")
    ap.add_argument("--out", default="receipts")
    a = ap.parse_args()
    a.answer_variant = a.answer_variant or []
    variants = {"default": RecallSettings()}
    for v in a.variant or SIGNALS:
        vname, _, fields = v.partition(":")
        variants[vname] = replace(RecallSettings(), **{
            k: int(x) if x.isdigit() else float(x)
            for k, x in (f.split("=") for f in fields.split(",") if f)})
    times = [int(t) for t in a.times.split(",")]
    paragraphs = prose_paragraphs()
    results: dict[str, object] = {}
    hashes: dict[str, str] = {}
    home = a.home or tempfile.mkdtemp(prefix="ikv-prose-")
    os.environ["IKV_HOME"] = home
    for model in _models(a.model):
        label = Path(model).stem
        rows: list[dict[str, object]] = []
        summary: dict[str, dict[str, object]] = {}
        for t in times:
            name = f"{hashlib.sha256(model.encode()).hexdigest()[:8]}-{a.ctx_size}-{t}"
            with Session(name, OpenOptions(model=model, n_ctx=a.ctx_size,
                                           create=not (Path(home) / "sessions" / name).exists())) as s:
                eng = s.engine
                assert eng is not None
                doc = document(paragraphs, t * a.ctx_size, eng.tokenize)
                hashes[f"{label}-{t}x"] = hashlib.sha256(doc.encode()).hexdigest()
                if not s.archive.sources():
                    path = Path(home) / f"{label}-{t}x.txt"
                    path.write_text(doc)
                    t0 = time.perf_counter()
                    ingest(s, [path])
                    print(f"{label} {t}x: ingested in {time.perf_counter() - t0:.0f} s", flush=True)
                # a fact still in the window needs no recall: it is left out of the count
                recent = eng.detokenize(s.window.recent.tokens)
                archived = [i for i, f in enumerate(FACTS) if f.key not in recent]
                summary[f"{t}x"] = {"tokens": s.window.stream_end, "archived": s.window.archived,
                                    "facts_archived": len(archived)}
                for vname, vsettings in variants.items():
                    tally = {"same": 0, "other": 0}
                    ms = []
                    for i, fact in enumerate(FACTS):
                        if i not in archived:
                            continue
                        for form in ("same", "other"):
                            t0 = time.perf_counter()
                            _, spans = recall_spans(s, getattr(fact, form), vsettings)
                            ms.append((time.perf_counter() - t0) * 1000)
                            hit = fact.key in " ".join(sp.text for sp in spans)
                            tally[form] += hit
                            row = {"times": t, "variant": vname, "fact": i, "form": form,
                                   "in_spans": hit}
                            if vname == "default":  # what the slot got, for the defaults only
                                row["spans"] = [{**sp.to_dict(), "source": Path(sp.source).name}
                                                for sp in spans]
                            rows.append(row)
                    summary[f"{t}x"][vname] = {
                        "same_in_spans": f"{tally['same']}/{len(archived)}",
                        "other_in_spans": f"{tally['other']}/{len(archived)}",
                        "recall_ms_median": round(sorted(ms)[len(ms) // 2], 1)}
                print(label, t, summary[f"{t}x"], flush=True)
                if a.spans_only:
                    continue
                # "recall" is `ikv ask` as it is; "slot" and "question" read the recalled
                # text in the recall slot (as a chat turn does) and right before the
                # question; each --answer-variant NAME answers as "recall NAME"
                modes = ["recall", "slot", "question", "sliding",
                         *(f"recall {v}" for v in a.answer_variant)]
                counts = dict.fromkeys(modes, 0)
                clean_end = 0
                for i, fact in enumerate(FACTS):
                    q = fact.same if i % 2 == 0 else fact.other
                    for mode in modes:
                        vname = mode.partition(" ")[2] or "default"
                        ans = ask(s, q, recall=mode != "sliding", max_tokens=a.max_tokens,
                                  settings=variants[vname],
                                  place=mode if mode in ("slot", "question") else "auto")
                        ok = named(ans.text, fact)
                        counts[mode] += ok
                        clean_end += mode == "recall" and ans.stopped != "limit"
                        rows.append({"times": t, "fact": i, "form": "same" if i % 2 == 0 else "other",
                                     "mode": mode, "answer": ans.text, "named": ok,
                                     "stopped": ans.stopped})
                summary[f"{t}x"].update({
                    **{f"answered_{m.replace(' ', '_')}": f"{c}/{len(FACTS)}" for m, c in counts.items()},
                    "recall_answers_ended_before_the_cap": f"{clean_end}/{len(FACTS)}"})
                # no slot; headroom is an eighth of the window: the whole document fits
                n_full = -(-(s.window.stream_end * 8 // 7 + 256) // 256) * 256
                n_train = eng.facts.n_ctx_train
            if n_full <= min(n_train, a.full_max):
                full_name = name + "-full"
                with Session(full_name, OpenOptions(
                        model=model, n_ctx=n_full, slot=0,
                        create=not (Path(home) / "sessions" / full_name).exists())) as f:
                    if not f.archive.sources():
                        ingest(f, [Path(home) / f"{label}-{t}x.txt"])
                    got = 0
                    for i, fact in enumerate(FACTS):
                        q = fact.same if i % 2 == 0 else fact.other
                        ans = ask(f, q, recall=False, max_tokens=a.max_tokens)
                        got += named(ans.text, fact)
                        rows.append({"times": t, "fact": i, "mode": "full", "answer": ans.text,
                                     "named": named(ans.text, fact)})
                    summary[f"{t}x"]["answered_full_context"] = f"{got}/{len(FACTS)}"
                    summary[f"{t}x"]["full_context_archived"] = f.window.archived  # 0: all of it
            print(label, t, summary[f"{t}x"], flush=True)
        results[label] = {"summary": summary, "rows": rows}
    receipt.write("recall_prose", {"n_ctx": a.ctx_size, "facts": len(FACTS),
                                   "variants": {k: vars(v) for k, v in variants.items()},
                                   "models": results},
                  {**hashes, **{Path(m).stem: receipt.file_sha256(m) for m in _models(a.model)}},
                  "python scripts/recall_prose.py " + " ".join(sys.argv[1:]), out_dir=a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
