"""CPU vs CUDA on one machine: compress throughput at several batch sizes, `ask` latency per mode,
and numerical parity of the two providers. Runs the same e2llm binary and the same models twice,
`--device cpu` then `--device cuda`, side by side.

    E2LLM_BIN=... E2LLM_MODELS=... ORT_DYLIB_PATH=<onnxruntime-gpu's libonnxruntime.so> \\
        python3 bench/gpu.py --corpus examples/sotu --copies 12 --out reports

Writes gpu.json and gpu.md into --out. See bench/gpu/README.md for how it is run on the device machine.

With `--precisions fp32 fp16` it compares the float32 graphs with their float16 variants instead (the
models directory needs them: `make setup GPU=1`, or export --fp16), on each of --devices: compress
throughput per batch size, `ask` time to first token per mode (the two precisions alternate run by
run), encoder cosine and identical answers; `--real-encoder DIR` adds the float16 variant of the real
encoder against float32 vectors computed elsewhere (see bench/gpu/README.md). Writes gpu_fp16.json and
gpu_fp16.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

import bench
from metrics import median

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


def embed(texts: list[str], models: Path | None = None) -> np.ndarray:
    out = subprocess.run([str(bench.BIN), "embed", *texts], capture_output=True, text=True, check=True,
                         env=dict(os.environ, E2LLM_MODELS=str(models or bench.MODELS)))
    return np.array([json.loads(line) for line in out.stdout.splitlines()], np.float32)


def parity_texts(texts: list[str]) -> list[str]:
    """The encoder parity inputs: the first 2,000 characters of 16 documents."""
    return [t[:2000] for t in texts[:16]]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def settings(device: str, precision: str | None = None) -> None:
    """The device (and precision) every following e2llm run uses."""
    os.environ["E2LLM_DEVICE"] = device
    if precision:
        os.environ["E2LLM_PRECISION"] = precision
    else:
        os.environ.pop("E2LLM_PRECISION", None)


def parity(work: Path, texts: list[str], configs: dict[str, tuple[str, str | None]] | None = None) -> dict:
    """Encoder vectors and greedy answers of two configurations (label: (device, precision); default
    CPU and CUDA) on the same inputs. Each label's answers come from one process per mode."""
    configs = configs or {"cpu": ("cpu", "fp32"), "cuda": ("cuda", "fp32")}
    vectors = {}
    answers = {}
    doc = work / "parity.txt"
    doc.write_text("\n\n".join(texts[:3]))
    db = work / "parity.db"
    for label, (device, precision) in configs.items():
        settings(device, precision)
        vectors[label] = embed(parity_texts(texts))
        bench.run_json(["compress", "--db", str(db), str(doc), "--json", "--force"])
        answers[label] = []
        for mode in ("rag", "compressed"):
            replies, _ = bench.run_json_many(["ask", "--db", str(db), "--doc", str(doc), "--mode", mode, "--json",
                                              "--max-new-tokens", "24", *QUESTIONS])
            answers[label] += [reply["answer"] for reply in replies]
    first, second = configs
    cosine = cosines(vectors[first], vectors[second])
    same = sum(a == b for a, b in zip(answers[first], answers[second]))
    return {"encoder_min_cosine": float(cosine.min()),
            "encoder_max_abs_diff": float(np.abs(vectors[first] - vectors[second]).max()),
            "texts": len(cosine), "answers_identical": same, "answers": len(answers[first]),
            "examples": [{first: a, second: b} for a, b in list(zip(answers[first], answers[second]))[:3]]}


def ask_document(work: Path, texts: list[str], target_tokens: int) -> tuple[Path, Path, dict]:
    """A document of about `target_tokens` encoder tokens (as bench.bench_ask builds it), compressed."""
    words = int(target_tokens / 1.25)
    text = " ".join("\n\n".join(texts).split(" ")[:words])
    doc, db = work / f"doc{target_tokens}.txt", work / f"ask{target_tokens}.db"
    doc.write_text(text)
    summary, _ = bench.run_json(["compress", "--db", str(db), str(doc), "--json"])
    return doc, db, {"encoder_tokens": summary["tokens"], "chunks": summary["chunks"]}


def ask_precisions(doc: Path, db: Path, modes: list[str], precisions: list[str], runs: int) -> dict:
    """`ask` per mode in fresh processes, the precisions alternating run by run (drift hits both)."""
    question = "What did the president say about the budget?"
    samples: dict[str, dict[str, list]] = {p: {m: [] for m in modes} for p in precisions}
    for _ in range(runs):
        for mode in modes:
            for precision in precisions:
                os.environ["E2LLM_PRECISION"] = precision
                answer, peak = bench.run_json(["ask", "--db", str(db), "--doc", str(doc), "--mode", mode, "--json",
                                               "--max-new-tokens", "32", question])
                samples[precision][mode].append({**answer, "peak_rss_mib": peak / 1024})
    out: dict[str, dict] = {}
    for precision, by_mode in samples.items():
        out[precision] = {}
        for mode, runs_ in by_mode.items():
            steps = [(s["total_ms"] - s["ttft_ms"]) / (s["generated_tokens"] - 1) for s in runs_
                     if s["generated_tokens"] > 1]
            out[precision][mode] = {
                "prompt_tokens": runs_[0]["prompt_tokens"], "truncated": runs_[0]["truncated"],
                "ttft_ms": median(s["ttft_ms"] for s in runs_),
                "ttft_spread": [min(s["ttft_ms"] for s in runs_), max(s["ttft_ms"] for s in runs_)],
                "total_ms": median(s["total_ms"] for s in runs_),
                "load_ms": median(s["load_ms"] for s in runs_),
                "peak_rss_mib": median(s["peak_rss_mib"] for s in runs_),
                "generated_tokens": median(s["generated_tokens"] for s in runs_),
                "ms_per_new_token": median(steps) if steps else None,
                "answer": runs_[0]["answer"], "provider": runs_[0]["provider"]}
    return out


def real_encoder_parity(folder: Path, work: Path, device: str) -> dict:
    """The float16 variant of the real encoder (`folder`/encoder.fp16.onnx) on `device`, against the
    float32 vectors of the same texts computed elsewhere (`folder`/expected.json). It runs in a copy of
    the models directory whose fp16_file is the real variant (its tokenizer is the real one too)."""
    expected = json.loads((folder / "expected.json").read_text())
    models = work / "real-encoder"
    models.mkdir(exist_ok=True)
    for path in bench.MODELS.iterdir():
        if not (models / path.name).exists() and path.name != "manifest.json":
            (models / path.name).symlink_to(path)
    (models / "encoder.fp16.onnx").unlink(missing_ok=True)
    (models / "encoder.fp16.onnx").symlink_to(folder.resolve() / "encoder.fp16.onnx")
    manifest = json.loads((bench.MODELS / "manifest.json").read_text())
    manifest["encoder"]["fp16_file"] = "encoder.fp16.onnx"
    manifest["files"]["encoder.fp16.onnx"] = expected.get("sha256", "")
    (models / "manifest.json").write_text(json.dumps(manifest))
    settings(device, "fp16")
    got = embed(expected["texts"], models)
    want = np.array(expected["vectors"], np.float32)
    cosine = cosines(got, want)
    return {"device": device, "texts": len(expected["texts"]), "min_cosine": float(cosine.min()),
            "mean_cosine": float(cosine.mean()), "max_abs_diff": float(np.abs(got - want).max()),
            "reference": expected.get("reference", "float32 encoder.onnx")}


def compare_precisions(args: argparse.Namespace, docs: list[tuple[str, str]], texts: list[str]) -> None:
    report = {"gpu": gpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(), "runs": args.runs,
              "weights": args.weights, "precisions": args.precisions, "info": {}, "compress": [], "ask": {}}

    def save() -> None:
        (args.out / "gpu_fp16.json").write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for device in args.devices:
            for precision in args.precisions:
                settings(device, precision)
                info, _ = bench.run_json(["info", "--json"])
                report["info"][f"{device} {precision}"] = {"provider": info["provider"], **info["precision"]}
            print(json.dumps(report["info"]), flush=True)
            batches = args.cuda_batches if device == "cuda" else args.cpu_batches
            for batch in batches:
                for precision in args.precisions:
                    settings(device, precision)
                    with GpuMemory() as memory:
                        result = bench.bench_compress(work, docs, args.runs, args.cpu_threads, batch)
                    result.pop("db")
                    result.update(device=device, precision=precision, batch=batch, threads=args.cpu_threads,
                                  peak_gpu_mib=memory.peak, ran=result["runs"][0].get("precision"))
                    result["runs"] = [{k: r[k] for k in ("chunks_per_second", "tokens_per_second", "peak_rss_mib")}
                                      for r in result["runs"]]
                    report["compress"].append(result)
                    print(json.dumps({k: result[k] for k in ("device", "precision", "ran", "batch",
                                                             "chunks_per_second")}), flush=True)
                    save()
            settings(device, args.precisions[0])
            doc, db, sizes = ask_document(work, texts, args.ask_tokens)
            with GpuMemory() as memory:
                modes = ask_precisions(doc, db, args.modes, args.precisions, args.runs)
            report["ask"][device] = {**sizes, "peak_gpu_mib": memory.peak, "precisions": modes}
            for precision, by_mode in modes.items():
                print(device, precision, json.dumps({m: round(r["ttft_ms"]) for m, r in by_mode.items()}), flush=True)
            save()
            if len(args.precisions) == 2:
                configs = {f"{device} {p}": (device, p) for p in args.precisions}
                report.setdefault("parity", {})[device] = parity(work, texts, configs)
                print(json.dumps(report["parity"][device])[:600], flush=True)
                save()
            if args.real_encoder:
                report.setdefault("real_encoder", {})[device] = real_encoder_parity(args.real_encoder, work, device)
                print(json.dumps(report["real_encoder"][device]), flush=True)
                save()
    write_precision_markdown(report, args.out / "gpu_fp16.md")
    print((args.out / "gpu_fp16.md").read_text())


def write_precision_markdown(report: dict, path: Path) -> None:
    first, second = report["precisions"][:2] if len(report["precisions"]) > 1 else report["precisions"] * 2
    lines = [f"# e2llm {first} vs {second} graphs", "",
             f"GPU: {report['gpu']}; {report['cpus']} CPU cores; {report['platform']}.", "",
             f"Weights: {report['weights']}.", "",
             f"Medians of {report['runs']} runs, [min, max] in brackets.", "",
             "Precision each run used (`e2llm info --json`): " + "; ".join(
                 f"{k}: encoder {v['encoder']}, decoder {v['decoder']} on {v['provider']}"
                 for k, v in report["info"].items()) + ".", "", "## Compress throughput", "",
             "| device | batch | precision | chunks | chunks/s | tokens/s | peak GPU memory (MiB) | vs " + first + " |",
             "|---|---|---|---|---|---|---|---|"]
    base = {(r["device"], r["batch"]): r["chunks_per_second"] for r in report["compress"] if r["precision"] == first}
    for r in report["compress"]:
        spread = [round(x) for x in r["spread_chunks_per_second"]]
        ratio = r["chunks_per_second"] / base[r["device"], r["batch"]] if (r["device"], r["batch"]) in base else 0
        lines.append(f"| {r['device']} | {r['batch']} | {r['ran'] or r['precision']} | {r['chunks']} | "
                     f"{r['chunks_per_second']:.0f} {spread} | {r['tokens_per_second']:.0f} | "
                     f"{r['peak_gpu_mib'] if r['device'] == 'cuda' else '—'} | {ratio:.2f}x |")
    for device, res in report["ask"].items():
        lines += ["", f"## ask on {device}, one document", "",
                  f"Document of {res['encoder_tokens']} encoder tokens ({res['chunks']} chunks), 32 new tokens at "
                  f"most, fresh process per run (the precisions alternate); peak GPU memory {res['peak_gpu_mib']} MiB.",
                  "", "| mode | prompt tokens | " + " | ".join(
                      f"{p} time to first token (ms)" for p in res["precisions"]) + " | ttft " + second + "/" + first +
                  " | " + " | ".join(f"{p} ms per new token" for p in res["precisions"]) + " | answers identical |",
                  "|---|---|" + "---|" * (2 * len(res["precisions"]) + 2)]
        for mode in res["precisions"][first]:
            rows = {p: res["precisions"][p][mode] for p in res["precisions"]}
            step = " | ".join(f"{r['ms_per_new_token']:.1f}" if r["ms_per_new_token"] else "—" for r in rows.values())
            lines.append(f"| {mode} | {rows[first]['prompt_tokens']} | " + " | ".join(
                f"{r['ttft_ms']:.0f} {[round(x) for x in r['ttft_spread']]}" for r in rows.values()) +
                f" | {rows[second]['ttft_ms'] / rows[first]['ttft_ms']:.2f}x | {step} | "
                f"{'yes' if rows[first]['answer'] == rows[second]['answer'] else 'no'} |")
    for device, p in report.get("parity", {}).items():
        lines += ["", f"## Parity on {device}, {first} vs {second} (these weights)", "",
                  f"- encoder: smallest cosine {p['encoder_min_cosine']:.7f}, largest absolute difference "
                  f"{p['encoder_max_abs_diff']:.2e} ({p['texts']} texts)",
                  f"- greedy answers identical: {p['answers_identical']} of {p['answers']} (rag and compressed, "
                  "3 questions, 24 new tokens)"]
    for device, r in report.get("real_encoder", {}).items():
        lines += ["", f"## The real encoder's float16 variant on {device}", "",
                  f"- against {r['reference']}: smallest cosine {r['min_cosine']:.7f}, mean "
                  f"{r['mean_cosine']:.7f}, largest absolute difference {r['max_abs_diff']:.2e} ({r['texts']} texts)"]
    path.write_text("\n".join(lines) + "\n")


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
    parser.add_argument("--precisions", nargs="*", help="compare these precisions (fp32 fp16) instead of devices")
    parser.add_argument("--real-encoder", type=Path,
                        help="with --precisions: a folder with the real encoder.fp16.onnx and expected.json")
    parser.add_argument("--out", type=Path, default=bench.ROOT / "reports")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    docs = corpus(args.corpus, args.copies)
    texts = [text for _, text in docs[: len(docs) // args.copies]]
    if args.precisions:
        compare_precisions(args, docs, texts)
        return
    report = {"gpu": gpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(), "runs": args.runs,
              "weights": args.weights, "compress": [], "ask": {}}

    def save() -> None:  # after every stage, so a run cut short still leaves its numbers
        (args.out / "gpu.json").write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for device, batches in (("cuda", args.cuda_batches), ("cpu", args.cpu_batches)):
            if device not in args.devices:
                continue
            settings(device, "fp32")  # the same graphs on both providers
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
            settings(device, "fp32")  # the same graphs on both providers
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
        rss = median(x["peak_rss_mib"] for x in r["runs"])
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
                  f"{p['encoder_max_abs_diff']:.2e} ({p.get('texts', 'up to 16')} texts)",
                  f"- greedy answers identical: {p['answers_identical']} of {p['answers']} (rag and compressed)", ""]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
