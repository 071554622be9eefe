"""Datasette with the e2llm plugin from the wheel: a browser (headless Chromium) runs e2llm_ask over a
compressed database and the answer appears on the page; the screenshot is kept in reports/."""

import html
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import CORPUS, MODELS, ROOT
from test_wheel import clean_env, venv

DOC = "1941-Roosevelt-1.txt"
QUESTION = "What is the first of the four essential human freedoms?"
OPTIONS = '{"mode":"rag","max_new_tokens":16}'
SCREENSHOT = ROOT / "reports" / "datasette.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 300) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium missing: run `make chromium` (make test does)"
    return found


@pytest.fixture(scope="module")
def datasette(wheel, e2llm, tmp_path_factory):
    """A running `datasette docs.db` from a venv with `e2llm[datasette]`; yields (base url, expected answer)."""
    tmp = tmp_path_factory.mktemp("datasette")
    python = venv(tmp / "venv", f"{wheel}[datasette]", offline=False)
    source = tmp / "corpus"
    source.mkdir()
    (source / DOC).write_text((CORPUS / DOC).read_text())
    db = tmp / "docs.db"
    e2llm("compress", "--db", db, source)
    expected = json.loads(e2llm("ask", "--db", db, "--doc", DOC, "--mode", "rag", "--max-new-tokens", "16",
                                "--json", QUESTION).stdout)["answer"]
    port = free_port()
    server = subprocess.Popen([str(python.parent / "datasette"), "serve", str(db), "--port", str(port),
                               "--setting", "sql_time_limit_ms", "300000"],
                              env=clean_env(E2LLM_MODELS=str(MODELS)), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                get(f"{base}/-/versions.json", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        yield base, expected
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_plugin_registers_e2llm_for_datasette(datasette):
    base, _ = datasette
    plugins = json.loads(get(f"{base}/-/plugins.json"))
    assert any(p["name"] == "e2llm" for p in plugins), plugins


def test_a_browser_asks_through_datasette_and_sees_the_answer(datasette, chromium, tmp_path):
    base, expected = datasette
    sql = f"select doc_id, e2llm_ask(doc_id, '{QUESTION}', '{OPTIONS}') as answer from documents"
    # The JSON API first (it also loads the models, so the browser's page is not the one that waits).
    rows = json.loads(get(f"{base}/docs.json?" + urllib.parse.urlencode({"sql": sql, "_shape": "array"})))
    assert rows == [{"doc_id": DOC, "answer": expected}]

    page = f"{base}/docs?" + urllib.parse.urlencode({"sql": sql})
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=300)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The answer column's cell holds exactly the answer (the question text on the page is no evidence).
    cells = re.findall(r'<td class="col-answer[^"]*">(.*?)</td>', dom.stdout, re.DOTALL)
    assert [html.unescape(c).strip() for c in cells] == [expected], dom.stdout[-3000:]
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shot = subprocess.run([*browser, f"--screenshot={SCREENSHOT}", "--window-size=1280,720",
                           "--hide-scrollbars", page], capture_output=True, text=True, timeout=300)
    assert shot.returncode == 0 and SCREENSHOT.stat().st_size > 10_000, shot.stderr[-2000:]
    print(f"\nscreenshot: {SCREENSHOT} ({os.path.getsize(SCREENSHOT)} bytes)")
