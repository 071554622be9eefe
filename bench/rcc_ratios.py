"""RCC reconstruction per compression ratio: the shipped RCC encoder's memory kept at every `ratio`-th
token for several ratios, each measured as `bench/eval_rcc.py` measures the shipped one (the same 200
held-out chunks, compressed alone, regenerated with the training prompt; BLEU-4 and token F1).

The RCC encoder graph does not depend on the ratio (it returns every position's keys and values; the
ratio only says which positions `compress --rcc` keeps), so each ratio is a models folder of links to
the shipped one with the manifest's `rcc.ratio` (and the memory fingerprint) changed. The encoder's LoRA
was trained at its own ratio (onnx/rcc/lora.safetensors' metadata): the other ratios read it as is.

    .venv/bin/python bench/rcc_ratios.py [--ratios 8 16 32 64] [--recon 200] [--work DIR]

Needs `make train-data` and `make setup` with RCC weights. With --work, ratios measured earlier
(WORK/ratios.jsonl) are kept. Writes reports/rcc_ratios.md and .json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

from eval_rcc import reconstruction
from runner import ROOT


def models_at_ratio(shipped: Path, ratio: int, work: Path) -> Path:
    """A models folder of links to `shipped` whose manifest keeps RCC memory at every `ratio`-th token."""
    manifest = json.loads((shipped / "manifest.json").read_text())
    if not manifest.get("rcc"):
        raise SystemExit(f"{shipped} has no RCC encoder: train it (`make train-rcc`) and run `make setup`")
    if manifest["rcc"]["ratio"] == ratio:
        return shipped
    folder = work / f"models-r{ratio}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in shipped.iterdir():
        link = folder / item.name
        if item.name != "manifest.json" and not link.exists():
            os.symlink(item.resolve(), link)
    rcc = manifest["rcc"]
    rcc["fingerprint"] = hashlib.sha256(f"{rcc['fingerprint']}:ratio={ratio}".encode()).hexdigest()
    rcc["ratio"] = ratio
    manifest["name"] = f"{manifest.get('name', shipped.name)}-rcc-ratio-{ratio}"
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=int, nargs="*", default=[8, 16, 32, 64])
    parser.add_argument("--recon", type=int, default=200, help="held-out chunks per ratio")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("E2LLM_MODELS", ROOT / "models" / "default")))
    parser.add_argument("--work", type=Path, help="keep the databases and results here (reused)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    shipped = args.models.resolve()
    trained_ratio = json.loads((shipped / "manifest.json").read_text())["rcc"]["ratio"]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        kept = work / "ratios.jsonl"
        results = {}
        if kept.is_file():
            for line in kept.read_text().splitlines():
                row = json.loads(line)
                if row["chunks_asked"] == args.recon:
                    results[row["ratio"]] = row
        for ratio in args.ratios:
            if ratio in results:
                continue
            row = reconstruction(work, args.recon, "rcc", models_at_ratio(shipped, ratio, work), f"rcc-r{ratio}")
            row.update(ratio=ratio, chunks_asked=args.recon)
            results[ratio] = row
            with kept.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "examples"}), flush=True)
    rows = [results[r] for r in sorted(args.ratios)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rcc_ratios.json").write_text(json.dumps({"trained_ratio": trained_ratio, "ratios": rows}, indent=2))
    lines = ["# RCC reconstruction per compression ratio", "",
             f"`bench/rcc_ratios.py`: the shipped RCC encoder (its LoRA trained at ratio {trained_ratio}) with its "
             "memory kept at every `ratio`-th token of each chunk (and the last); the same held-out HotpotQA chunks "
             "as reports/rcc_eval.md, each compressed alone and regenerated with the training prompt, greedy, up "
             "to 192 new tokens.", "",
             "| ratio | memory slots per 128-token chunk | chunks | BLEU-4 | token F1 |", "|---|---|---|---|---|"]
    for r in rows:
        trained = " (trained)" if r["ratio"] == trained_ratio else ""
        lines.append(f"| {r['ratio']}{trained} | {-(-128 // r['ratio'])} | {r['chunks']} | {r['bleu4']:.3f} | "
                     f"{r['token_f1']:.3f} |")
    for r in rows:
        lines += ["", f"ratio {r['ratio']}:"]
        for ex in r["examples"][:2]:
            lines += [f"- original: {ex['original'][:160]!r}", f"  regenerated: {ex['regenerated'][:160]!r}"]
    (args.out / "rcc_ratios.md").write_text("\n".join(lines) + "\n")
    print((args.out / "rcc_ratios.md").read_text())


if __name__ == "__main__":
    main()
