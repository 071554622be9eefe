"""CPU vs CUDA on one machine: compress throughput at several batch sizes, `ask` latency per mode,
and numerical parity of the two providers. Runs the same e2llm binary and the same models twice,
`--device cpu` then `--device cuda`, side by side.

    E2LLM_BIN=... E2LLM_MODELS=... ORT_DYLIB_PATH=<onnxruntime-gpu's libonnxruntime.so> \\
        python3 bench/gpu.py --corpus examples/sotu --copies 12 --out reports

Writes gpu.json and gpu.md into --out. See bench/gpu/README.md for how it is run on the device machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

import bench

QUESTIONS = ["What did the president say about the budget?", "Which countries are mentioned?",
             "What is said about taxes?"]


class GpuMemory:
    """Peak GPU memory in use (MiB) while the block runs, sampled by nvidia-smi every 50 ms."""

    def __enter__(self) -> "GpuMemory":
        self.peak = 0
        try:
            self.proc = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          "-lms", "50"], stdout=subprocess.PIPE, text=True)
        except OSError:  # no GPU here (a CPU-only dry run)
            self.proc = None
            return self
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip().isdigit():
                self.peak = max(self.peak, int(line))

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait()


def gpu_name() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"unknown ({e})"


def corpus(folder: Path, copies: int) -> list[tuple[str, str]]:
    texts = [(p.name, p.read_text()) for p in sorted(folder.glob("*.txt"))]
    return [(f"{c}-{name}", text) for c in range(copies) for name, text in texts]


def embed(texts: list[str]) -> np.ndarray:
    out = subprocess.run([str(bench.BIN), "embed", *texts], capture_output=True, text=True, check=True,
                         env=dict(os.environ, E2LLM_MODELS=str(bench.MODELS)))
    return np.array([json.loads(line) for line in out.stdout.splitlines()], np.float32)


def parity(work: Path, texts: list[str]) -> dict:
    """Encoder vectors and greedy answers of both providers on the same inputs."""
    vectors = {}
    answers = {}
    doc = work / "parity.txt"
    doc.write_text("\n\n".join(texts[:3]))
    db = work / "parity.db"
    for device in ("cpu", "cuda"):
        os.environ["E2LLM_DEVICE"] = device
        vectors[device] = embed([t[:2000] for t in texts[:16]])
        bench.run_json(["compress", "--db", str(db), str(doc), "--json", "--force"])
        answers[device] = []
        for mode in ("rag", "compressed"):
            for question in QUESTIONS:
                answer, _ = bench.run_json(["ask", "--db", str(db), "--doc", str(doc), "--mode", mode, "--json",
                                            "--max-new-tokens", "24", question])
                answers[device].append(answer["answer"])
    cosine = np.sum(vectors["cpu"] * vectors["cuda"], axis=1) / (
        np.linalg.norm(vectors["cpu"], axis=1) * np.linalg.norm(vectors["cuda"], axis=1))
    same = sum(a == b for a, b in zip(answers["cpu"], answers["cuda"]))
    return {"encoder_min_cosine": float(cosine.min()), "encoder_max_abs_diff": float(np.abs(vectors["cpu"] - vectors["cuda"]).max()),
            "answers_identical": same, "answers": len(answers["cpu"]),
            "examples": [{"cpu": a, "cuda": b} for a, b in list(zip(answers["cpu"], answers["cuda"]))[:3]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=bench.ROOT / "examples" / "sotu")
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-threads", type=int, default=os.cpu_count())
    parser.add_argument("--cpu-batches", type=int, nargs="*", default=[32])
    parser.add_argument("--cuda-batches", type=int, nargs="*", default=[16, 64, 256, 1024])
    parser.add_argument("--ask-tokens", type=int, default=8000)
    parser.add_argument("--modes", nargs="*", default=["question-only", "rag", "compressed", "hybrid", "full"])
    parser.add_argument("--devices", nargs="*", default=["cuda", "cpu"], help="(cpu alone: a dry run without GPU)")
    parser.add_argument("--weights", default="the models in E2LLM_MODELS", help="what the models are, for the report")
    parser.add_argument("--out", type=Path, default=bench.ROOT / "reports")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    docs = corpus(args.corpus, args.copies)
    texts = [text for _, text in docs[: len(docs) // args.copies]]
    report = {"gpu": gpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(), "runs": args.runs,
              "weights": args.weights, "compress": [], "ask": {}}

    def save() -> None:  # after every stage, so a run cut short still leaves its numbers
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for device, batches in (("cuda", args.cuda_batches), ("cpu", args.cpu_batches)):
            if device not in args.devices:
                continue
            os.environ["E2LLM_DEVICE"] = device
            for batch in batches:
                with GpuMemory() as memory:
                    result = bench.bench_compress(work, docs, args.runs, args.cpu_threads, batch)
                result.pop("db")
                result.update(device=device, batch=batch, threads=args.cpu_threads, peak_gpu_mib=memory.peak)
                result["runs"] = [{k: r[k] for k in ("chunks_per_second", "tokens_per_second", "peak_rss_mib",
                                                     "provider") if k in r} for r in result["runs"]]
                report["compress"].append(result)
                print(json.dumps({k: result[k] for k in ("device", "batch", "chunks", "chunks_per_second")}), flush=True)
                save()
        for device in args.devices:
            os.environ["E2LLM_DEVICE"] = device
            with GpuMemory() as memory:
                result = bench.bench_ask(work, args.ask_tokens, args.modes, args.runs, texts)
            result["peak_gpu_mib"] = memory.peak
            if not result["chunks"] and report["ask"]:  # the document was compressed by the first device's run
                first = next(iter(report["ask"].values()))
                result["encoder_tokens"], result["chunks"] = first["encoder_tokens"], first["chunks"]
            report["ask"][device] = result
            print(device, json.dumps(result["modes"]), flush=True)
            save()
        if {"cpu", "cuda"} <= set(args.devices):
            report["parity"] = parity(work, texts)
            save()
    write_markdown(report, args.out / "gpu.md")
    print((args.out / "gpu.md").read_text())


def write_markdown(report: dict, path: Path) -> None:
    for res in report["ask"].values():  # reports written before the fix above
        if not res["chunks"]:
            first = next(iter(report["ask"].values()))
            res["encoder_tokens"], res["chunks"] = first["encoder_tokens"], first["chunks"]
    lines = ["# e2llm on CPU and CUDA, side by side", "",
             f"GPU: {report['gpu']}; {report['cpus']} CPU cores; {report['platform']}.", "",
             f"Weights: {report['weights']}.", "",
             f"Medians of {report['runs']} runs, [min, max] in brackets.", "", "## Compress throughput", "",
             "| device | batch | chunks | chunks/s | tokens/s | peak RSS (MiB) | peak GPU memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in report["compress"]:
        spread = [round(x) for x in r["spread_chunks_per_second"]]
        rss = statistics.median(x["peak_rss_mib"] for x in r["runs"])
        lines.append(f"| {r['device']} ({r['threads']} threads) | {r['batch']} | {r['chunks']} | "
                     f"{r['chunks_per_second']:.0f} {spread} | {r['tokens_per_second']:.0f} | {rss:.0f} | "
                     f"{r['peak_gpu_mib'] if r['device'] == 'cuda' else '—'} |")
    lines += ["", "## ask, one document", ""]
    for device, res in report["ask"].items():
        label = f"{device} ({report['cpus']} threads)" if device == "cpu" else device
        lines += [f"**{label}** — document of {res['encoder_tokens']} encoder tokens ({res['chunks']} chunks), "
                  f"32 new tokens at most; peak GPU memory {res['peak_gpu_mib']} MiB:", ""]
        lines += bench.ask_table(res["modes"])
    if "parity" in report:
        p = report["parity"]
        lines += ["## Parity, CPU vs CUDA", "",
                  f"- encoder: smallest cosine {p['encoder_min_cosine']:.7f}, largest absolute difference "
                  f"{p['encoder_max_abs_diff']:.2e} (16 texts)",
                  f"- greedy answers identical: {p['answers_identical']} of {p['answers']} (rag and compressed)", ""]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
