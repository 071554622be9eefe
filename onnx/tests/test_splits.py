"""The HotpotQA splits (onnx/e2llm_offline/train_data.py): held-out, tuning and training questions are
disjoint by id and by question text, the held-out split is the committed list, and the synthetic
facts come from our generator only."""

from __future__ import annotations

import random
import re

from e2llm_offline.train_data import HELDOUT_IDS, TUNING_QUESTIONS, load_hotpotqa, split, synthetic_fact, varied_fact


def normalise(question: str) -> str:
    return re.sub(r"\W+", " ", question.lower()).strip()


def test_splits_are_disjoint_by_id_and_by_question_text():
    records = load_hotpotqa()
    train, tune, held = split(records, random.Random(0))
    assert len(tune) == TUNING_QUESTIONS and len(train) + len(tune) + len(held) == len(records)
    assert {r["id"] for r in held} == set(HELDOUT_IDS.read_text().split())
    texts = [{normalise(r["question"]) for r in part} for part in (train, tune, held)]
    # HotpotQA repeats a handful of question texts under different ids: none may cross a split.
    assert not texts[0] & texts[2], sorted(texts[0] & texts[2])[:5]
    assert not texts[0] & texts[1], sorted(texts[0] & texts[1])[:5]
    # Same seed, same split: what trained once never moves into the evaluation splits later.
    again = split(load_hotpotqa(), random.Random(0))
    assert [r["id"] for r in again[1]] == [r["id"] for r in tune]


def test_synthetic_facts_are_generated_not_read():
    fact, question, answer = synthetic_fact(random.Random(3))
    assert answer in fact and answer.isdigit() and len(answer) == 7 and question.endswith("?")


def test_varied_facts_cover_every_number_length_and_words_not_the_bench_vocabulary():
    rng = random.Random(5)
    facts = [varied_fact(rng) for _ in range(400)]
    lengths = {len(answer) for _, _, answer in facts if answer.isdigit()}
    assert lengths == set(range(1, 8)), lengths
    words = [answer for _, _, answer in facts if not answer.isdigit()]
    assert 50 < len(words) < 200, len(words)
    for statement, question, answer in facts:
        assert answer in statement and answer not in question and question.endswith("?")
        # NIAH's needles (bench/niah.py) are a lighthouse's steps in one of its cities: never trained on.
        assert "lighthouse" not in statement.lower() and "steps" not in question
