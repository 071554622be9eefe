"""Compress Parquet shards in parallel with PySpark, then load the results into SQLite.

Each Spark task runs `e2llm compress --out` on one shard (Parquet in: columns id, text; Parquet out:
one row per chunk with its vector), so the same binary that runs the nightly job scales out over
an existing cluster; no database is involved until `e2llm import` merges the outputs.

    .venv/bin/python examples/distributed_spark.py --shards data/shards --out data/vectors --db data/all.db

On a real cluster, point --master at it and put the binary and models on every worker (same paths,
or set E2LLM_MODELS).
"""

import argparse
import glob
import json
import os
import pathlib
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def compress_shard(shard: str, out_dir: str, binary: str, models: str, threads: int) -> dict:
    """Runs on a Spark worker: one shard in, one vectors file out."""
    out = os.path.join(out_dir, pathlib.Path(shard).stem + ".vectors.parquet")
    started = time.perf_counter()
    result = subprocess.run(
        [binary, "compress", "--out", out, shard, "--json", "--threads", str(threads)],
        capture_output=True, text=True, env=dict(os.environ, E2LLM_MODELS=models),
    )
    summary = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    # Per-document failures are in the JSON summary; errors that stop the run are on stderr.
    reasons = "; ".join(f"{f['doc_id']}: {f['reason']}" for f in summary.get("failures", []))
    return {"shard": shard, "out": out, "exit": result.returncode, "stderr": (reasons or result.stderr)[-2000:],
            "seconds": time.perf_counter() - started, **{k: summary.get(k) for k in ("added", "failed", "chunks")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="directory of input Parquet shards (id, text)")
    parser.add_argument("--out", required=True, help="directory for the vectors Parquet files")
    parser.add_argument("--db", help="import every output into this SQLite database")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "e2llm"))
    parser.add_argument("--models", default=os.environ.get("E2LLM_MODELS", str(ROOT / "models" / "default")))
    parser.add_argument("--threads-per-task", type=int, default=1)
    args = parser.parse_args()

    from pyspark.sql import SparkSession  # imported here so --help works without Spark

    shards = sorted(glob.glob(os.path.join(args.shards, "*.parquet")))
    if not shards:
        raise SystemExit(f"no .parquet shards in {args.shards}")
    os.makedirs(args.out, exist_ok=True)
    spark = SparkSession.builder.master(args.master).appName("e2llm-compress").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    try:
        out_dir, binary, models, threads = args.out, args.binary, args.models, args.threads_per_task
        results = (
            spark.sparkContext.parallelize(shards, len(shards))
            .map(lambda shard: compress_shard(shard, out_dir, binary, models, threads))
            .collect()
        )
    finally:
        spark.stop()
    elapsed = time.perf_counter() - started
    failed = [r for r in results if r["exit"] != 0]
    for r in results:
        print(f"{r['shard']}: exit {r['exit']}, {r['added']} docs, {r['chunks']} chunks, {r['seconds']:.1f} s")
    chunks = sum(r["chunks"] or 0 for r in results)
    print(json.dumps({"shards": len(shards), "failed": len(failed), "chunks": chunks, "seconds": elapsed}))
    if failed:
        raise SystemExit("failed shards:\n" + "\n".join(f"{r['shard']}: {r['stderr']}" for r in failed))
    if args.db:
        subprocess.run([args.binary, "import", "--db", args.db, *[r["out"] for r in results]], check=True)


if __name__ == "__main__":
    main()
