"""bench.md's compress table from a measured report: reports measured before the sentence-transformers
baseline render as before; with it, its row and ratio appear after the Python onnxruntime row."""

import copy
import json
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402


def compress_section(report: dict) -> list[str]:
    lines, _ = bench.render(report)
    return lines[lines.index("## Compress throughput"): lines.index("### Scaling")]


def test_the_sentence_transformers_baseline_gets_its_row_and_ratio():
    measured = json.loads((ROOT / "reports" / "bench.json").read_text())
    measured["compress"].pop("sentence_transformers", None)
    before = compress_section(measured)
    assert not any("sentence-transformers" in line for line in before)

    with_baseline = copy.deepcopy(measured)
    with_baseline["compress"]["sentence_transformers"] = {"chunks_per_second": 54.2, "spread": [51.7, 54.6],
                                                          "version": "6.3.0", "torch": "2.15.0"}
    with_baseline["compress"]["ratio_sentence_transformers"] = 1.77
    after = compress_section(with_baseline)
    python_row = next(i for i, line in enumerate(after) if line.startswith("| Python: tokenizers"))
    row = "| sentence-transformers 6.3.0 (PyTorch 2.15.0), encode only | 54.2 [51.7, 54.6] | |"
    assert after[python_row + 1] == row
    assert "Ratio e2llm / sentence-transformers: **1.77x**" in after
    # Everything else is as before.
    assert [line for line in after if "sentence-transformers" not in line] == before + [""]



def test_in_child_runs_in_another_process():
    # The measured e2llm processes inherit their parent's peak RSS: baselines that load PyTorch run apart.
    import os

    assert bench.in_child(os.getpid) != os.getpid()


def test_only_scaling_without_compress_is_refused():
    import argparse

    import pytest

    with pytest.raises(SystemExit, match="needs compress"):
        bench.measure(argparse.Namespace(only=["scaling"], threads=2, batch_size=32, runs=1, speeches=1))
