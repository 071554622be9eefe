"""RCC memory in training (e2llm_offline.rcc): keys kept before rotary and put back in front of a prompt
at positions 0..m-1 are exactly what the decoder would have cached itself, so with every position kept
(ratio 1) the decoder continues as if it had read the text; with fewer kept, the memory is shorter."""

from __future__ import annotations

import torch  # requirements-train.txt: `make test` installs it

from e2llm_offline.common import rcc_fingerprint, rcc_slot_positions
from e2llm_offline.decoder import load_gguf
from e2llm_offline.rcc import encode_memory
from e2llm_offline.train import FrozenDecoder
from tiny import write_gguf


def test_slots_are_every_ratio_th_and_the_last():
    assert rcc_slot_positions(0, 32) == []
    assert rcc_slot_positions(5, 32) == [4]
    assert rcc_slot_positions(70, 32) == [31, 63, 69]


def test_full_memory_is_the_decoders_own_cache(tmp_path):
    write_gguf(tmp_path / "tiny.gguf")
    decoder = FrozenDecoder(load_gguf(tmp_path / "tiny.gguf"))
    first, second = [3, 7, 1, 9, 4], [5, 2, 8]
    whole = decoder(decoder.embed[torch.tensor(first + second)][None])[0]
    memory = encode_memory(decoder, None, [first], ratio=1)
    assert memory[0][0].shape[2] == len(first)
    continued = decoder(decoder.embed[torch.tensor(second)][None], memory=memory)[0]
    torch.testing.assert_close(continued, whole[len(first):], rtol=1e-4, atol=1e-4)
    # Two segments' memories concatenate in order (each segment encoded alone, from position 0).
    two = encode_memory(decoder, None, [first, second], ratio=2)
    assert two[0][0].shape[2] == len(rcc_slot_positions(5, 2)) + len(rcc_slot_positions(3, 2))


def test_fingerprint_names_decoder_lora_and_ratio():
    base = rcc_fingerprint("d", "base", 32)
    assert base != rcc_fingerprint("d", "base", 16) != rcc_fingerprint("e", "base", 32)
    assert base != rcc_fingerprint("d", "1" * 64, 32)
