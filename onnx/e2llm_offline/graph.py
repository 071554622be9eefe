"""A thin helper over ``onnx.helper`` for writing graphs as straight-line code."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; readable by every ONNX Runtime since 1.13
# Model metadata: the names of the nodes that stay float32 in the float16 variant (see fp16.py).
FLOAT32_NODES_KEY = "e2llm.float32_nodes"

Dim = int | str


MICROSOFT = "com.microsoft"  # ONNX Runtime's contrib operators (GroupQueryAttention, MatMulNBits)


class GraphBuilder:
    """Accumulates nodes, initializers, inputs and outputs; names intermediate values uniquely."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()
        self._constants: dict[tuple, str] = {}
        self.float32_nodes: list[str] = []

    def fresh(self, hint: str) -> str:
        name, n = hint, 0
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def input(self, name: str, elem_type: int, shape: Sequence[Dim]) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def output(self, value: str, name: str, elem_type: int, shape: Sequence[Dim]) -> None:
        """Declares graph output ``name``, produced by an Identity of ``value`` when names differ."""
        if value != name:
            self._used.add(name)
            self.nodes.append(helper.make_node("Identity", [value], [name], name=f"{name}_out"))
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def weight(self, array: np.ndarray, hint: str) -> str:
        """A named initializer (float arrays stored as float32)."""
        if array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        name = self.fresh(hint)
        # (np.ascontiguousarray would turn 0-d scalars into 1-d arrays)
        self.initializers.append(numpy_helper.from_array(np.asarray(array, order="C"), name))
        return name

    def const(self, value: float | int | Sequence[int] | Sequence[float], dtype: type = np.int64) -> str:
        """A small constant (deduplicated). Scalars are 0-d, sequences 1-d."""
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.weight(array, "const")
        return self._constants[key]

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1,
           **attrs: object) -> str:
        names = self.ops(op_type, inputs, hint, outputs, **attrs)
        return names[0]

    def named_op(self, op_type: str, inputs: Sequence[str], output: str, **attrs: object) -> str:
        """A node whose single output has exactly the name ``output`` (e.g. a graph output)."""
        return self.named_ops(op_type, inputs, [output], **attrs)[0]

    def named_ops(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str], domain: str = "",
                  **attrs: object) -> list[str]:
        """A node whose outputs have exactly the names ``outputs``, none of them used yet. ``domain``: e.g.
        ``MICROSOFT`` for ONNX Runtime's contrib ops."""
        for name in outputs:
            if name in self._used:
                raise ValueError(f"value name {name} already used")
            self._used.add(name)
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=self.fresh(f"n_{outputs[0]}"),
                                           domain=domain or None, **attrs))
        return list(outputs)

    def ops(self, op_type: str, inputs: Sequence[str], hint: str | None = None, outputs: int = 1,
            **attrs: object) -> list[str]:
        base = hint or op_type.lower()
        names = [self.fresh(base if outputs == 1 else f"{base}_{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=self.fresh(f"n_{base}"), **attrs))
        return names

    @contextmanager
    def float32(self) -> Iterator[None]:
        """Nodes added inside the block stay float32 in the float16 variant of the model (fp16.py):
        for computations that overflow or lose too much in float16. The float32 graph is unchanged."""
        start = len(self.nodes)
        yield
        self.float32_nodes.extend(node.name for node in self.nodes[start:])

    def model(self, doc: str = "", producer: str = "e2llm_offline") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, producer_name=producer, doc_string=doc,
                                  opset_imports=[helper.make_opsetid("", OPSET)])
        if any(node.domain == MICROSOFT for node in self.nodes):
            model.opset_import.append(helper.make_opsetid(MICROSOFT, 1))
        model.ir_version = IR_VERSION
        if self.float32_nodes:
            helper.set_model_props(model, {FLOAT32_NODES_KEY: json.dumps(self.float32_nodes)})
        return model

    # Common compositions -------------------------------------------------------------------------

    def linear(self, x: str, weight_t: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
        """``x @ weight_t (+ bias)`` with ``weight_t`` stored as [in, out]."""
        y = self.op("MatMul", [x, self.weight(weight_t, f"{hint}.weight_t")], hint)
        if bias is not None:
            y = self.op("Add", [y, self.weight(bias, f"{hint}.bias")], f"{hint}_b")
        return y

    def gelu_exact(self, x: str, hint: str) -> str:
        """0.5 · x · (1 + erf(x / √2)) — the pattern ONNX Runtime fuses into its Gelu kernel."""
        scaled = self.op("Div", [x, self.const(np.sqrt(2.0), np.float32)], f"{hint}_div")
        erf = self.op("Erf", [scaled], f"{hint}_erf")
        one_plus = self.op("Add", [erf, self.const(1.0, np.float32)], f"{hint}_add")
        prod = self.op("Mul", [x, one_plus], f"{hint}_mul")
        return self.op("Mul", [prod, self.const(0.5, np.float32)], hint)


def check(model: onnx.ModelProto) -> None:
    """Structural check (skipped above protobuf's 2 GB serialisation limit)."""
    if model.ByteSize() < 2_000_000_000:
        onnx.checker.check_model(model)


FLOAT = TensorProto.FLOAT
INT32 = TensorProto.INT32
INT64 = TensorProto.INT64
