"""Which 8-bit (and 4-bit) encoder graphs ONNX Runtime can run on this CPU, side by side in one run:
chunks/s, cosine to the float32 vectors, and whether a vector depends on the other chunks of its batch.

    .venv/bin/python bench/encoder_int8.py [--models models/default] [--runs 3] [--out reports/encoder_int8.json]

Chunks are ~90-word windows of the example corpus (examples/sotu), tokenised with the encoder's
tokenizer, run in batches of 16 sorted by length (as `e2llm compress` does) and one at a time.
"Batch drift" is 1 - cosine between a chunk's vector in its batch of 16 and alone: 0 for a graph whose
vectors depend on their chunk only. Variants are written to a temporary folder; the float32 graph is
the reference. The last variant calibrates on windows that are not measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "onnx"))

from e2llm_offline.quantize import _blockwise, _weight_matmuls, quantize_encoder  # noqa: E402

BATCH = 16
WORDS = 90


def windows(corpus: Path) -> list[str]:
    """~90-word windows of every text in `corpus`, half-overlapping."""
    out = []
    for path in sorted(corpus.glob("*.txt")):
        words = path.read_text().split()
        out += [" ".join(words[i:i + WORDS]) for i in range(0, max(1, len(words) - WORDS // 2), WORDS // 2)]
    return out


def batches(ids: list[list[int]], batch: int):
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        width = max(len(ids[i]) for i in rows)
        tokens = np.zeros((len(rows), width), np.int64)
        mask = np.zeros_like(tokens)
        for r, i in enumerate(rows):
            tokens[r, :len(ids[i])] = ids[i]
            mask[r, :len(ids[i])] = 1
        yield rows, {"input_ids": tokens, "attention_mask": mask}


def encode(session: ort.InferenceSession, ids: list[list[int]], batch: int) -> np.ndarray:
    out = np.zeros((len(ids), session.get_outputs()[0].shape[-1]), np.float32)
    for rows, feeds in batches(ids, batch):
        out[rows] = session.run(None, feeds)[0]
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def variants(source: Path, folder: Path, calibration: list[list[int]]) -> dict[str, Path]:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    logging.getLogger("onnxruntime.quantization").setLevel(logging.ERROR)
    model = onnx.load(str(source))
    weight_matmuls = [n.name for n in _weight_matmuls(model)]
    paths = {"float32": source}

    def save(name: str, graph: onnx.ModelProto) -> None:
        paths[name] = folder / f"variant{len(paths)}.onnx"
        onnx.save(graph, str(paths[name]))

    save("MatMulNBits 8-bit /128 (shipped)", quantize_encoder(onnx.load(str(source))))
    save("MatMulNBits 8-bit /32", _blockwise(onnx.load(str(source)), bits=8, symmetric=True, block=32))
    save("MatMulNBits 4-bit /32", _blockwise(onnx.load(str(source)), bits=4, symmetric=False, block=32))
    paths["dynamic int8"] = folder / "dynamic.onnx"
    quantize_dynamic(str(source), str(paths["dynamic int8"]), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_quantize=weight_matmuls)
    # The feed-forward output (the GELU's outliers) is where dynamic int8 loses most: 8-bit blocks there.
    ffn_out = [name for name in weight_matmuls if name.endswith("ffn_out")]
    mixed = folder / "mixed_dynamic.onnx"
    quantize_dynamic(str(source), str(mixed), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_quantize=[n for n in weight_matmuls if n not in ffn_out])
    save("dynamic int8 + ffn_out 8-bit /128", quantize_encoder(onnx.load(str(mixed))))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([feeds for _, feeds in batches(calibration, BATCH)])

        def get_next(self):
            return next(self.feeds, None)

    paths["static int8 (calibrated)"] = folder / "static.onnx"
    quantize_static(str(source), str(paths["static int8 (calibrated)"]), Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=weight_matmuls)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models/default")
    parser.add_argument("--corpus", type=Path, default=ROOT / "examples/sotu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports/encoder_int8.json")
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(str(args.models / "encoder_tokenizer.json"))
    texts = windows(args.corpus)
    ids = [e.ids[:256] for e in tokenizer.encode_batch(texts)]
    calibration, measured = ids[::10], [x for i, x in enumerate(ids) if i % 10]
    print(f"{len(measured)} chunks measured (mean {np.mean([len(x) for x in measured]):.0f} tokens), "
          f"{len(calibration)} for calibration", file=sys.stderr)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        paths = variants(args.models / "encoder.onnx", Path(tmp), calibration)
        sessions = {name: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                    for name, p in paths.items()}
        seconds = {(name, b): [] for name in sessions for b in (BATCH, 1)}
        vectors = {}
        for run in range(args.runs):
            for name, session in sessions.items():
                for batch in (BATCH, 1):
                    started = time.perf_counter()
                    vectors[name, batch] = encode(session, measured, batch)
                    seconds[name, batch].append(time.perf_counter() - started)
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)

    reference = vectors["float32", BATCH]
    base = statistics.median(seconds["float32", BATCH])
    rows = []
    for name in sessions:
        row = {"variant": name}
        for batch in (BATCH, 1):
            median = statistics.median(seconds[name, batch])
            row[f"chunks_per_s_batch{batch}"] = len(measured) / median
            row[f"speedup_batch{batch}"] = base / median
        cos = cosines(vectors[name, BATCH], reference)
        row["min_cosine"] = float(cos.min())
        row["mean_cosine"] = float(cos.mean())
        row["max_batch_drift"] = float((1 - cosines(vectors[name, BATCH], vectors[name, 1])).max())
        rows.append(row)
        print(f"{name:34s} b{BATCH} {row[f'chunks_per_s_batch{BATCH}']:6.1f}/s {row[f'speedup_batch{BATCH}']:.2f}x  "
              f"b1 {row['chunks_per_s_batch1']:6.1f}/s {row['speedup_batch1']:.2f}x  min cos {row['min_cosine']:.4f}  "
              f"batch drift {row['max_batch_drift']:.1e}")
    report = {"chunks": len(measured), "threads": args.threads, "runs": args.runs, "batch": BATCH,
              "onnxruntime": ort.__version__, "speedup_is_vs": f"float32 at batch {BATCH}", "variants": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
