"""Shared fixtures for the Python-side product tests: the release binary and the models from
`make setup` (a missing piece fails with the command that makes it, never a skip)."""

import os
import pathlib
import sys
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "target" / "release" / "e2llm"
MODELS = pathlib.Path(os.environ.get("E2LLM_MODELS", ROOT / "models" / "default"))
CORPUS = ROOT / "examples" / "sotu"
sys.path.insert(0, str(ROOT / "python"))
from build_wheel import TAG, cargo_version  # noqa: E402  (the wheel's own name and version)

VERSION = cargo_version()
WHEEL = ROOT / "dist" / f"e2llm-{VERSION}-{TAG}.whl"


@pytest.fixture(scope="session")
def wheel() -> pathlib.Path:
    """The wheel `make wheel` built (the Python package users install)."""
    assert WHEEL.is_file(), f"{WHEEL} missing: run `make wheel` (make test does)"
    return WHEEL


@pytest.fixture(scope="session")
def e2llm():
    assert BIN.is_file(), f"{BIN} missing: run `make build` (make test does)"
    assert (MODELS / "manifest.json").is_file(), f"models missing at {MODELS}: run `make setup`"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, E2LLM_MODELS=str(MODELS))
        result = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"e2llm {' '.join(map(str, args))} failed:\n{result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def corpus_db(e2llm, tmp_path_factory):
    """Three example addresses compressed into a database."""
    src = tmp_path_factory.mktemp("corpus")
    for name in ["1941-Roosevelt-1.txt", "1790-Washington-1.txt", "2002-Bush-1.txt"]:
        (src / name).write_text((CORPUS / name).read_text())
    db = tmp_path_factory.mktemp("db") / "corpus.db"
    e2llm("compress", "--db", db, src)
    return db
