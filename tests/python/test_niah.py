"""bench/niah.py's haystacks: the needle asked about and its distractors are all placed, distinct."""

import random
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import niah  # noqa: E402

PARAGRAPHS = [f"Paragraph {i} of the address speaks at some length about the state of the union." for i in range(50)]


def test_distractors_are_like_facts_about_other_cities_with_other_numbers():
    for seed in range(20):
        rng = random.Random(seed)
        sentence, question, answer, others = niah.needles(rng, 4)
        city = question.removeprefix("How many steps does the harbour lighthouse of ").removesuffix(" have?")
        assert city in niah.CITIES and city in sentence and answer in sentence
        assert len(others) == 4 and all(city not in o and "harbour lighthouse" in o for o, _ in others)
        assert len({c for c in niah.CITIES if any(c in o for o, _ in others)}) == 4
        assert all(number != answer and number in o for o, number in others)
        text = niah.build_document(PARAGRAPHS, 3, 2000, 0.5, sentence, tuple(o for o, _ in others), rng)
        placed = [p for p in text.split("\n\n") if "lighthouse" in p]
        assert len(placed) == 5 and sentence in placed


def test_without_distractors_the_haystack_holds_the_needle_once_at_its_depth():
    sentence, _, _ = niah.needle(random.Random(0))
    for depth, index in ((0.0, 0), (1.0, -1)):
        parts = niah.build_document(PARAGRAPHS, 0, 1000, depth, sentence).split("\n\n")
        assert parts[index] == sentence and sum("lighthouse" in p for p in parts) == 1
