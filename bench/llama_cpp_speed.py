"""llama.cpp's prefill and decode speed on given token ids (run by precision_bench.py in the bench-only
venv that has llama-cpp-python; prints one JSON line).

    .venv-llama/bin/python bench/llama_cpp_speed.py MODEL.gguf IDS.json THREADS NEW_TOKENS
"""

from __future__ import annotations

import json
import sys
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama


def last_logits(llm: Llama) -> np.ndarray:
    """The logits of the last evaluated position (llama.cpp keeps only those without logits_all)."""
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))


def main() -> None:
    gguf, ids_file, threads, new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ids = json.load(open(ids_file))
    llm = Llama(model_path=gguf, n_ctx=max(512, len(ids) + new_tokens + 8), n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False)
    began = time.perf_counter()
    llm.eval(ids)  # prefill, in batches of n_batch like llama.cpp's own tools
    prefill = time.perf_counter() - began
    token = int(last_logits(llm).argmax())
    began = time.perf_counter()
    for _ in range(new_tokens - 1):  # greedy, one token per step through the KV cache
        llm.eval([token])
        token = int(last_logits(llm).argmax())
    decode = time.perf_counter() - began
    print(json.dumps({"prompt_tokens": len(ids), "prefill_tokens_per_s": len(ids) / prefill,
                      "decode_tokens_per_s": (new_tokens - 1) / decode, "generated": new_tokens}))


if __name__ == "__main__":
    main()
