"""Which int8 kernels this CPU runs fast, and an fp32 fallback for blockwise int8 graphs where it has none.

ONNX Runtime multiplies ``MatMulNBits`` (blockwise int8 weights, activations quantized per token at
accuracy level 4) with int8 dot-product instructions: AVX512-VNNI or AVX-VNNI on x86, SDOT on ARM. A CPU
without them (an AVX2-only x86, say) takes a generic path that ran at about half the speed of the plain
fp32 graph. There the served graph is better rebuilt at load time with the same int8 weights turned back
into fp32 (weight-only quantization): fp32 speed, and the probabilities of the quantized weights without the
activation rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

# x86: AVX512-VNNI, AVX-VNNI (VEX), AMX int8; ARM: the SDOT/UDOT dot products.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})

BlockwiseMode = Literal["auto", "int8", "fp32"]
"""How a blockwise int8 model runs (``TRIAGE_ONNX_BLOCKWISE``): int8 kernels, its weights as fp32, or ``auto``."""
BLOCKWISE_MODES: tuple[str, ...] = get_args(BlockwiseMode)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``); None where they cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def has_int8_dot(flags: frozenset[str] | None) -> bool | None:
    """Whether the CPU has int8 dot-product instructions; None when its flags are unknown."""
    return None if flags is None else bool(flags & INT8_DOT_FLAGS)


def blockwise_as_fp32(mode: str) -> bool:
    """Whether blockwise int8 MatMuls run as fp32 weights: asked for, or ``auto`` on a CPU known to lack int8
    dot products (where its flags cannot be read, the int8 kernels run as exported)."""
    return mode == "fp32" or (mode == "auto" and has_int8_dot(cpu_flags()) is False)


def all_nodes(nodes: Iterable[Any]) -> Iterator[Any]:
    """ONNX ``nodes`` and, at any depth, the nodes of the If, Loop and Scan bodies among them (a body may read
    tensors of the graphs around it)."""
    from onnx import AttributeProto

    for node in nodes:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from all_nodes(attr.g.node)
            elif attr.type == AttributeProto.GRAPHS:
                for body in attr.graphs:
                    yield from all_nodes(body.node)


def dequantize_nbits(model: Any) -> int:
    """Replace every 8-bit ``MatMulNBits`` node of an ONNX ``ModelProto`` by a plain MatMul (and Add, where it
    has a bias) on the fp32 weights its int8 blocks encode. Returns how many nodes were replaced."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    replaced = 0
    dropped: set[str] = set()
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        inputs = list(node.input) + [""] * (6 - len(node.input))
        constant = all(name in initializers for name in inputs[1:4] if name) and bool(inputs[1] and inputs[2])
        if node.op_type != "MatMulNBits" or attrs.get("bits") != 8 or inputs[4] or not constant:
            nodes.append(node)
            continue
        k, n, block = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"])
        blocks = numpy_helper.to_array(initializers[inputs[1]]).reshape(n, -1, block).astype(np.float32)
        scales = numpy_helper.to_array(initializers[inputs[2]]).reshape(n, -1, 1).astype(np.float32)
        zero = (  # symmetric: no zero points stored, the default is 2^(bits-1)
            numpy_helper.to_array(initializers[inputs[3]]).reshape(n, -1, 1).astype(np.float32)
            if inputs[3]
            else np.full((1, 1, 1), 128.0, dtype=np.float32)
        )
        weight = ((blocks - zero) * scales).reshape(n, -1)[:, :k].T  # (K, N)
        name = f"{node.output[0]}_fp32_{replaced}"  # node names may be empty; outputs are unique
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), f"{name}_weight"))
        out = node.output[0]
        if inputs[5]:
            nodes.append(helper.make_node("MatMul", [inputs[0], f"{name}_weight"], [f"{name}_out"], name=name))
            nodes.append(helper.make_node("Add", [f"{name}_out", inputs[5]], [out], name=f"{name}_bias"))
        else:
            nodes.append(helper.make_node("MatMul", [inputs[0], f"{name}_weight"], [out], name=name))
        replaced += 1
        dropped.update(name for name in inputs[1:4] if name)
    if replaced:
        used = {name for node in all_nodes(nodes) for name in node.input} | {out.name for out in graph.output}
        used |= {value.name for value in graph.input}
        for index in reversed(range(len(graph.initializer))):  # in place: extend() would copy the embedding table
            name = graph.initializer[index].name
            if name in dropped and name not in used:
                del graph.initializer[index]
        del graph.node[:]
        graph.node.extend(nodes)
    return replaced


def save_for_session(model: Any, path: Path) -> None:
    """Save ``model`` for ONNX Runtime with its tensors in a side file (``path`` + ``.data``), written one at
    a time: serializing a model with its tensors inline holds a second copy of all of them."""
    import onnx

    onnx.save(model, str(path), save_as_external_data=True, location=f"{path.name}.data", size_threshold=1024)
