"""The decoder's tokenizer.json, rebuilt from a GGUF vocabulary with the ``tokenizers`` library.

GGUF ``gpt2`` tokenizers are byte-level BPE: ``tokenizer.ggml.tokens`` (byte-level strings, index =
id), ``tokenizer.ggml.merges`` ("left right", by rank) and ``tokenizer.ggml.token_type`` (1 normal,
3 control, 4 user-defined). ``tokenizer.ggml.pre`` names llama.cpp's pre-tokenizer; "smollm" is the
GPT-2 regex with every digit split off on its own.
"""

from __future__ import annotations

from pathlib import Path

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

# llama.cpp pre-tokenizer names → whether digits are split individually before the GPT-2 regex.
_PRE_TOKENIZERS = {"smollm": True, "gpt-2": False, "default": False}


def _contents(reader: gguf.GGUFReader, key: str) -> object:
    item = reader.fields.get(key)
    if item is None:
        raise ValueError(f"GGUF lacks {key}")
    return item.contents()


def tokenizer_from_gguf(path: Path) -> Tokenizer:
    reader = gguf.GGUFReader(Path(path))
    model = _contents(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise NotImplementedError(f"{path}: tokenizer model {model!r} is not supported (gpt2 byte-level BPE is)")
    pre = reader.fields.get("tokenizer.ggml.pre")
    pre_name = pre.contents() if pre is not None else "default"
    if pre_name not in _PRE_TOKENIZERS:
        raise NotImplementedError(f"{path}: pre-tokenizer {pre_name!r} is not supported ({sorted(_PRE_TOKENIZERS)})")
    tokens: list[str] = list(_contents(reader, "tokenizer.ggml.tokens"))
    types: list[int] = list(_contents(reader, "tokenizer.ggml.token_type"))
    merges: list[tuple[str, str]] = []
    for merge in _contents(reader, "tokenizer.ggml.merges"):
        left, sep, right = merge.partition(" ")
        if not sep or " " in right:
            raise ValueError(f"{path}: malformed merge {merge!r}")
        merges.append((left, right))
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{path}: duplicate tokens in the vocabulary")

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if _PRE_TOKENIZERS[pre_name]:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # Control tokens (<|im_start|>, <|im_end|>, ...) are matched whole in the text and never split;
    # they keep their vocabulary ids.
    control = [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types)
               if t == gguf.TokenType.CONTROL]
    user = [AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types)
            if t == gguf.TokenType.USER_DEFINED]
    tokenizer.add_special_tokens(control)
    if user:
        tokenizer.add_tokens(user)
    for token in control + user:
        if tokenizer.token_to_id(token.content) != vocab[token.content]:
            raise AssertionError(f"added token {token.content!r} changed id")
    return tokenizer


def decoder_tokenizer_json_from_gguf(path: Path) -> str:
    return tokenizer_from_gguf(path).to_str(pretty=False)
