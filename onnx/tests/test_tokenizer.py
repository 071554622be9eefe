"""The decoder tokenizer rebuilt from the GGUF: round trip, control tokens, no BOS added."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from e2llm_offline.tokenizer import tokenizer_from_gguf

TEXTS = [
    "The capital of France is",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "Numbers: 0 7 42 3.14159 -17 1,000,000 2024-03-15 0x1F",
    "  two leading spaces, trailing   ",
    "tabs\tand\nnew\n\nlines\r\nwindows",
    "Unicode: café, naïve, Straße, Łódź, İstanbul, 東京, Москва, مرحبا, हिन्दी, 한국어",
    "Emoji: 😀🚀🔥👍🏽 🧑‍🤝‍🧑 flags 🇫🇷",
    "code: def f(x):\n    return x ** 2  # comment {braces} [brackets] <tags>",
    "Mixed <|im_end|> in the middle and <|endoftext|> too",
    "Zero-width\u200bjoiner and combining e\u0301 and NBSP\u00a0here",
    "",
    "a" * 500,
]


@pytest.fixture(scope="module")
def tokenizer(models_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(models_dir / "decoder_tokenizer.json"))


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    assert all(0 <= i < 49152 for i in ids)


def test_control_tokens_are_single_special_tokens(tokenizer: Tokenizer) -> None:
    for name, expected in (("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)):
        assert tokenizer.token_to_id(name) == expected
        assert tokenizer.encode(f"x{name}y", add_special_tokens=False).ids[1] == expected
    ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>", add_special_tokens=False).ids
    assert ids[0] == 1 and ids[-1] == 2
    # Special tokens are dropped when decoding with skip_special_tokens (as the Rust runtime does).
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nHi"


def test_no_bos_or_eos_added_and_digits_split(tokenizer: Tokenizer) -> None:
    plain = tokenizer.encode("hello", add_special_tokens=False).ids
    assert tokenizer.encode("hello", add_special_tokens=True).ids == plain
    tokens = tokenizer.encode("year 2024", add_special_tokens=False).tokens
    assert tokens[-4:] == ["2", "0", "2", "4"]


def test_file_matches_fresh_build(models_dir: Path, decoder_gguf: Path) -> None:
    data = json.loads((models_dir / "decoder_tokenizer.json").read_text())
    assert data["model"]["type"] == "BPE" and data["decoder"]["type"] == "ByteLevel"
    assert [p["type"] for p in data["pre_tokenizer"]["pretokenizers"]] == ["Digits", "ByteLevel"]
    assert sum(1 for t in data["added_tokens"] if t["special"]) == 17
    fresh = tokenizer_from_gguf(decoder_gguf)
    stored = Tokenizer.from_str(json.dumps(data))
    for text in TEXTS:
        assert fresh.encode(text).ids == stored.encode(text).ids
