"""Long texts with facts planted in them, for calibration, tests and benchmarks.

The filler is varied prose from a seeded grammar (repeating one paragraph would make every
key look alike and flatter any retrieval method); each needle is a fact with a question whose
answer appears nowhere else in the text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

SUBJECTS = [
    "The old miller", "A young engineer", "The harbour master", "Our neighbour", "The librarian",
    "A travelling merchant", "The village doctor", "My grandmother", "The night guard",
    "A quiet student", "The ship's cook", "The mayor", "A tired farmer", "The schoolteacher",
]
VERBS = [
    "walked along", "painted", "repaired", "wrote about", "argued over", "remembered",
    "photographed", "sold", "cleaned", "measured", "forgot", "carried", "studied", "visited",
]
OBJECTS = [
    "the stone bridge", "a broken clock", "the northern road", "the orchard", "a wooden boat",
    "the market square", "an empty barn", "the river mill", "a map of the coast", "the bell tower",
    "the winter garden", "a box of letters", "the railway station", "the lighthouse",
]
TAILS = [
    "before the rain came", "while the town was asleep", "for the third time that week",
    "without saying a word", "as the bells rang noon", "after a long argument",
    "in the grey morning light", "with great care", "because nobody else would",
    "and then went home", "during the autumn fair", "under a cloudless sky",
]
CONNECTIVES = ["Later,", "Meanwhile,", "The next day,", "Some said that", "In the evening,", ""]


def filler_sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lead = rng.choice(CONNECTIVES)
        subject = rng.choice(SUBJECTS)
        if lead:
            subject = subject[0].lower() + subject[1:]
        parts = [lead, subject, rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(TAILS)]
        out.append(" ".join(p for p in parts if p) + ".")
    return out


@dataclass(frozen=True)
class Needle:
    fact: str  # the sentence planted in the text
    question: str
    answer: str  # a substring of `fact`
    paraphrase: str = ""  # the question in words the fact does not use

    def named_in(self, text: str) -> bool:
        """The text names the answer as a whole word or number ("186172" does not name 86172)."""
        return names(text, self.answer)

    def found_in(self, texts: Iterable[str]) -> bool:
        """The answer appears in one of the texts (recalled spans), in any case."""
        return any(self.answer.lower() in t.lower() for t in texts)


def names(text: str, want: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(want.lower())}(?![\w])", text.lower()) is not None


def pass_key_needle(seed: int) -> Needle:
    key = str(random.Random(seed).randint(10000, 99999))
    return Needle(
        fact=f"The pass key is {key}. Remember it. {key} is the pass key.",
        question="What is the pass key?",
        answer=key,
        paraphrase="Which secret number was I told to memorise?",
    )


FACT_NEEDLES = [
    Needle("Marta keeps her spare bicycle in the blue shed behind the bakery.",
           "Where does Marta keep her spare bicycle?", "blue shed",
           "In which building is the extra bike stored?"),
    Needle("The code for the meeting room door is violet seven.",
           "What is the code for the meeting room door?", "violet seven",
           "How do I unlock the conference room?"),
    Needle("Professor Okafor's favourite fruit is the quince.",
           "What is Professor Okafor's favourite fruit?", "quince",
           "Which fruit does the professor like best?"),
]


@dataclass(frozen=True)
class Haystack:
    text: str
    needles: list[Needle]
    depths: list[float]  # where each needle starts, as a fraction of the text


def build(n_sentences: int, needles: list[Needle], depths: list[float], seed: int = 0) -> Haystack:
    """Filler of `n_sentences` with each needle inserted at its depth (0 = start, 1 = end)."""
    sentences = filler_sentences(n_sentences, seed)
    for needle, depth in sorted(zip(needles, depths), key=lambda p: -p[1]):
        sentences.insert(round(depth * len(sentences)), needle.fact)
    return Haystack(" ".join(sentences), needles, depths)
