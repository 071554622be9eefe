"""float16 variants of exported graphs (``encoder.fp16.onnx``, ``decoder.fp16.onnx``) for the GPU.

Weights and computation move to float16; the graph's inputs and outputs keep their float32 types
(a Cast after each float input, a Cast before each float output), so the runtime feeds and reads the
same tensors whichever variant it loads. Nodes that the graph builder marked float32
(``GraphBuilder.float32``, recorded in the model's metadata under ``FLOAT32_NODES_KEY``) stay float32,
with Casts around them: the RMS norm's mean of squares (x² overflows float16 above 256) and the
encoder's pooling (sums over up to 512 positions).

    PYTHONPATH=onnx .venv/bin/python -m e2llm_offline.fp16 --models models/default [--parts encoder decoder]

writes the variants beside an existing export and records them in its ``manifest.json``
(``encoder.fp16_file``, ``decoder.fp16_file``); ``e2llm_offline.export --fp16`` does the same during an
export. ``make setup GPU=1`` builds the encoder's only: on an H100 it speeds up ``compress`` a little and
halves its activations' memory, while the decoder's is slower (one token per step is launch-bound, and
the float32 KV cache interface adds a Cast per cache tensor per step): reports/gpu_fp16.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .common import record_variants, save_onnx, variant_file
from .graph import FLOAT32_NODES_KEY, MICROSOFT, check

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
# Ops that take a float input of either precision as it is (its shape, or a conversion): no Cast before them.
TYPE_AGNOSTIC_INPUT_OPS = {"Shape", "Size", "Cast"}
# Ops that create float tensors from attributes; their types are fixed up here (anything else that
# names an output type, e.g. RandomNormal's dtype, is refused rather than converted wrongly).
TYPED_OPS = {"Cast", "Constant", "ConstantOfShape"}
TYPE_ATTRIBUTES = {"to", "dtype"}
PARTS = ("encoder", "decoder")  # the manifest entries that get a float16 variant


@dataclass
class Conversion:
    """What ``to_fp16`` did, for the export log and the tests."""

    float16_nodes: int = 0
    float32_nodes: int = 0
    casts: int = 0
    initializers: int = 0
    clamped: int = 0  # weight values beyond ±65504, clamped to it
    flushed: int = 0  # non-zero weight values that became 0 in float16
    clamped_names: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.float16_nodes} float16 nodes, {self.float32_nodes} float32 nodes, {self.casts} casts, "
                f"{self.initializers} float16 initializers ({self.clamped} values clamped to ±{FP16_MAX:.0f}"
                f"{' in ' + ', '.join(self.clamped_names[:4]) if self.clamped_names else ''}, {self.flushed} "
                "non-zero values flushed to 0)")


def float32_nodes(model: onnx.ModelProto) -> set[str]:
    """The names of the nodes the graph builder marked float32 (empty set if none were)."""
    for prop in model.metadata_props:
        if prop.key == FLOAT32_NODES_KEY:
            return set(json.loads(prop.value))
    return set()


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value of the float32 graph (shape inference for the intermediate ones)."""
    # onnx's shape inference does not know ONNX Runtime's contrib ops: their outputs (in this float32
    # graph: GroupQueryAttention's output and cache) are declared float32 here for it.
    graph = model.graph
    outputs = {o.name for o in graph.output}
    added = [helper.make_tensor_value_info(value, FLOAT, None) for node in graph.node if node.domain == MICROSOFT
             for value in node.output if value and value not in outputs]
    graph.value_info.extend(added)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    finally:
        for _ in added:
            graph.value_info.pop()
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def _to_float16(array: np.ndarray, conversion: Conversion, name: str) -> np.ndarray:
    big = np.abs(array) > FP16_MAX
    if big.any():
        conversion.clamped += int(big.sum())
        conversion.clamped_names.append(name)
    half = np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)
    conversion.flushed += int(np.count_nonzero((half == 0) & (array != 0)))
    return half


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Conversion]:
    """A float16 copy of ``model`` (float32 in and out, see the module docstring)."""
    graph = model.graph
    if graph.sparse_initializer or any(a.type == onnx.AttributeProto.GRAPH for n in graph.node for a in n.attribute):
        raise NotImplementedError(f"{graph.name}: sparse initializers and subgraphs are not supported")
    keep = float32_nodes(model)
    unknown = keep - {n.name for n in graph.node}
    if unknown:
        raise ValueError(f"{graph.name}: metadata names float32 nodes that are not in the graph: {sorted(unknown)[:3]}")
    types = _value_types(model)
    conversion = Conversion()
    initializers = {t.name: t for t in graph.initializer}
    float_initializers = {name for name, t in initializers.items() if t.data_type == FLOAT}
    graph_outputs = {o.name for o in graph.output}
    used = {v for n in graph.node for v in list(n.input) + list(n.output)} | set(initializers)
    used |= {i.name for i in graph.input}

    def fresh(hint: str) -> str:
        name, n = hint, 0
        while name in used:
            n += 1
            name = f"{hint}_{n}"
        used.add(name)
        return name

    nodes: list[onnx.NodeProto] = []
    produced: dict[str, int] = {i.name: i.type.tensor_type.elem_type for i in graph.input}  # type in the new graph
    renamed: dict[str, str] = {}  # float32 graph outputs now produced in float16 under another name
    casts: dict[tuple[str, int], str] = {}
    half_initializers: dict[str, str] = {}
    kept_initializers: set[str] = set()
    new_initializers: list[TensorProto] = []

    def cast(value: str, to: int) -> str:
        if (value, to) not in casts:
            out = fresh(f"{value}_{'fp16' if to == FLOAT16 else 'fp32'}")
            nodes.append(helper.make_node("Cast", [value], [out], name=fresh(f"n_cast_{out}"), to=to))
            produced[out] = to
            casts[value, to] = out
            conversion.casts += 1
        return casts[value, to]

    def half_initializer(name: str) -> str:
        if name not in half_initializers:
            array = numpy_helper.to_array(initializers[name])
            tensor = numpy_helper.from_array(_to_float16(array, conversion, name), fresh(f"{name}_fp16"))
            new_initializers.append(tensor)
            half_initializers[name] = tensor.name
            conversion.initializers += 1
        return half_initializers[name]

    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        precision = FLOAT if node.name in keep else FLOAT16
        conversion.float32_nodes += precision == FLOAT
        conversion.float16_nodes += precision == FLOAT16
        if node.op_type not in TYPED_OPS and any(a.name in TYPE_ATTRIBUTES for a in node.attribute):
            raise NotImplementedError(f"{node.name}: {node.op_type} names an output type; not converted")
        for i, value in enumerate(node.input):
            if not value:
                continue
            value = renamed.get(value, value)
            if types.get(value) != FLOAT and value not in renamed.values():
                node.input[i] = value  # not a float tensor (ids, shapes, masks)
            elif node.op_type in TYPE_AGNOSTIC_INPUT_OPS:
                node.input[i] = value  # any float type will do
                if value in float_initializers:
                    kept_initializers.add(value)
            elif value in float_initializers:
                if precision == FLOAT16:
                    node.input[i] = half_initializer(value)
                else:
                    kept_initializers.add(value)
                    node.input[i] = value
            else:
                node.input[i] = value if produced[value] == precision else cast(value, precision)
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
                attribute.i = precision
            elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT:
                if precision == FLOAT16:
                    array = numpy_helper.to_array(attribute.t)
                    attribute.t.CopyFrom(numpy_helper.from_array(_to_float16(array, conversion, node.name),
                                                                 attribute.t.name))
            elif attribute.type == onnx.AttributeProto.TENSOR and node.op_type not in TYPED_OPS:
                raise NotImplementedError(f"{node.name}: tensor attribute {attribute.name} is not converted")
        for i, value in enumerate(node.output):
            kind = types.get(value)
            if kind is None:
                raise ValueError(f"{node.name}: shape inference gave no type for {value}")
            if kind == FLOAT:
                kind = precision
            if value in graph_outputs and kind == FLOAT16:
                renamed[value] = fresh(f"{value}_fp16")
                value = node.output[i] = renamed[value]
            produced[value] = kind
        nodes.append(node)

    for output in graph.output:
        if output.name in renamed:
            nodes.append(helper.make_node("Cast", [renamed[output.name]], [output.name],
                                          name=fresh(f"n_cast_{output.name}"), to=FLOAT))
            conversion.casts += 1

    kept = [t for t in graph.initializer if t.name not in float_initializers or t.name in kept_initializers]
    new_graph = helper.make_graph(nodes, graph.name, list(graph.input), list(graph.output), kept + new_initializers,
                                  doc_string=graph.doc_string)
    # value_info of the float32 graph (if any) with the new types; renamed values keep the float32 name's entry.
    for value in graph.value_info:
        if value.name in produced:
            info = new_graph.value_info.add()
            info.CopyFrom(value)
            if info.type.tensor_type.elem_type == FLOAT:
                info.type.tensor_type.elem_type = produced[value.name]
    result = helper.make_model(new_graph, producer_name=model.producer_name, doc_string=(
        f"{model.doc_string} [float16 weights and compute; float32 inputs and outputs]").strip(),
        opset_imports=list(model.opset_import))
    result.ir_version = model.ir_version
    for prop in model.metadata_props:
        entry = result.metadata_props.add()
        entry.CopyFrom(prop)
    return result, conversion


def write_variant(model: onnx.ModelProto, path: Path, progress=print) -> list[Path]:
    """Converts ``model`` and saves it at ``path`` (checked); returns the files written."""
    started = time.monotonic()
    half, conversion = to_fp16(model)
    check(half)
    files = save_onnx(half, path)
    progress(f"{path.name}: {conversion.summary()} in {time.monotonic() - started:.1f}s")
    return files


def add_variants(models_dir: Path, parts: Sequence[str] = PARTS, progress=print) -> dict:
    """Writes the float16 variants of an existing export's ``parts`` (encoder, decoder) and records them
    (and their sha256) in its manifest.json, which is rewritten atomically. Returns the new manifest."""
    def write(part: str, source: Path) -> list[Path]:
        model = onnx.load(str(source))
        if not float32_nodes(model):
            raise SystemExit(f"{source} predates the float32 markers that keep its overflow-prone nodes out of "
                             "float16: re-export it first (`make setup`)")
        return write_variant(model, source.parent / variant_file(source.name, "fp16"), progress)

    return record_variants(models_dir, parts, "fp16_file", write, "float16", progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2llm_offline.fp16", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="an exported models directory")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which graphs (default: both)")
    args = parser.parse_args(argv)
    add_variants(args.models, args.parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
