"""Row-wise int8 for an exported ONNX graph: int8 weights per output, activations quantized per token at run time.

Every MatMul with a constant 2-D weight becomes, in standard ONNX and ONNX Runtime ops:

- once per distinct input ``x`` (the query, key and value projections share theirs): ``x`` as rows of its last
  axis, each row's scale ``max|row| / 127`` (``ReduceMax`` of ``Abs``), and the row as uint8 around 128
  (``QuantizeLinear`` along the rows, a zero point of 128 for every row);
- per MatMul: ``MatMulIntegerToFloat`` (com.microsoft) of those codes and the int8 weights, which multiplies
  in int8 (VNNI where the CPU has it, ``vpmaddubsw`` on AVX2, the dot products on ARM) and scales each output
  column by its weight scale in the same pass, then a ``Mul`` by each row's scale, then the rows back in
  ``x``'s leading shape.

A row's scale depends on that row alone, so the rewritten MatMuls give a token the same result alone or in
any batch, and a comment's scores move only by the float rounding of the rest of the graph (~1e-7): per-tensor
dynamic int8 (one scale for a whole batch) cannot say that, and ``MatMulNBits`` (blockwise) can but ran at
about 0.6x this speed on the same CPU. Weights are symmetric per output column with ``bits`` bits, 7 by
default: an AVX2 (or AVX-512 without VNNI) CPU adds pairs of uint8 × int8 products in int16, which 8-bit
weights can overflow (2 × 255 × 127 > 32767) and 7-bit ones cannot (2 × 255 × 63 = 32130).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ZERO_POINT = 128  # activations: uint8 codes around 128, so a symmetric scale covers -127..127
DEFAULT_WEIGHT_BITS = 7


def weight_codes(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``(K, N)`` float weight as int8 codes and one float scale per output column (symmetric, ``bits`` bits)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"weight bits must be between 2 and 8, not {bits}")
    top = 2 ** (bits - 1) - 1
    scales = np.maximum(np.abs(weight).max(axis=0), np.finfo(np.float32).tiny) / top
    codes = np.clip(np.rint(weight / scales), -top, top).astype(np.int8)
    return codes, scales.astype(np.float32)


def slice_width(k: int, split: int) -> int:
    """The width a ``k``-wide input is quantized in: ``split`` where it divides a wider ``k``, else ``k``."""
    return split if split and k > split and k % split == 0 else k


def reference_matmul(x: np.ndarray, weight: np.ndarray, bits: int = DEFAULT_WEIGHT_BITS, split: int = 0) -> np.ndarray:
    """What a rewritten MatMul computes, in numpy: for tests and for judging the rounding (``x``: ``(..., K)``)."""
    k = weight.shape[0]
    step = slice_width(k, split)
    rows = x.reshape(-1, k).astype(np.float32)
    out = np.zeros((len(rows), weight.shape[1]), np.float32)
    for start in range(0, k, step):
        codes, scales = weight_codes(weight[start : start + step], bits)
        part = rows[:, start : start + step]
        row_scales = np.maximum(np.abs(part).max(axis=1), np.finfo(np.float32).tiny) / 127.0
        q = np.clip(np.rint(part / row_scales[:, None]), -127, 127).astype(np.int64)
        out += (q @ codes.astype(np.int64)).astype(np.float32) * scales[None, :] * row_scales[:, None]
    return out.reshape(*x.shape[:-1], weight.shape[1])


def quantize_rowwise(
    model: Any, keep: set[str] | frozenset[str] = frozenset(), bits: int = DEFAULT_WEIGHT_BITS, split: int = 0
) -> int:
    """Rewrite, in place, every MatMul of an ONNX ``ModelProto`` whose second input is a 2-D fp32 initializer
    (but those named in ``keep``) as row-wise int8. ``split``: an input wider than this (and a multiple of it)
    is quantized in slices of this width, each with its own scale per row and its weight rows with their own
    scale per column, and the slices' products summed: finer, and slower (0: never). Returns how many MatMuls
    it rewrote (a float weight that something else still reads, an If or Loop body say, stays beside its int8
    codes)."""
    from onnx import TensorProto, helper, numpy_helper

    from models.kernels import all_nodes

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 15:
        raise ValueError(f"row-wise int8 needs ONNX opset 15 or later (Shape with an end), not {opset}")
    initializers = {init.name: init for init in graph.initializer}
    uses: dict[str, int] = {out.name: 1 for out in graph.output}  # a weight that is also an output stays
    names: set[str] = set(initializers) | {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
    for node in all_nodes(graph.node):  # what If, Loop, Scan bodies read stays too
        names.update([node.name, *node.output])
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    const = "rowwise"  # every name made here starts with it: a prefix no existing name starts with
    while any(name.startswith(const) for name in names):
        const += "_"
    shared = [
        numpy_helper.from_array(np.array(ZERO_POINT, np.uint8), f"{const}_zero_point"),
        numpy_helper.from_array(np.array(1.0, np.float32), f"{const}_one"),
        numpy_helper.from_array(np.array(1.0 / 127.0, np.float32), f"{const}_per_code"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).tiny, np.float32), f"{const}_tiny"),
        numpy_helper.from_array(np.array([-1], np.int64), f"{const}_last"),
    ]
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18 on
        shared.append(numpy_helper.from_array(np.array([1], np.int64), f"{const}_row_axis"))

    def reduce_max(data: str, out: str) -> Any:
        if opset >= 18:
            return helper.make_node("ReduceMax", [data, f"{const}_row_axis"], [out], name=out, keepdims=0)
        return helper.make_node("ReduceMax", [data], [out], name=out, axes=[1], keepdims=0)

    rows_of: dict[str, tuple[list[tuple[str, str]], str]] = {}  # input -> ([(codes, row scales)], leading shape)
    coded: dict[str, str] = {}  # float weight -> the prefix of its int8 codes, scales and width
    nodes: list[Any] = []
    dropped: set[str] = set()
    done = 0
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if (
            weight is None
            or node.name in keep
            or len(weight.dims) != 2
            or weight.data_type != TensorProto.FLOAT  # an fp16 graph would get fp32 out of MatMulIntegerToFloat
        ):
            nodes.append(node)
            continue
        x = node.input[0]
        k, n = (int(d) for d in weight.dims)
        tag = f"{const}{done}"
        if x not in rows_of:
            p = f"{const}_in{len(rows_of)}"
            parts = k // slice_width(k, split)
            graph.initializer.append(numpy_helper.from_array(np.array([-1, k], np.int64), f"{p}_rows_shape"))
            nodes += [
                helper.make_node("Shape", [x], [f"{p}_lead"], name=f"{p}_lead", end=-1),
                helper.make_node("Reshape", [x, f"{p}_rows_shape"], [f"{p}_rows"], name=f"{p}_rows"),
            ]
            slices = [f"{p}_rows"]
            if parts > 1:  # each slice of a wide input gets its own scale per row, each slice of W per column
                slices = [f"{p}_rows{i}" for i in range(parts)]
                graph.initializer.append(numpy_helper.from_array(np.full(parts, split, np.int64), f"{p}_split"))
                nodes.append(helper.make_node("Split", [f"{p}_rows", f"{p}_split"], slices, name=f"{p}_split", axis=1))
            quantized = []
            for i, rows in enumerate(slices):
                q = f"{p}_{i}"
                nodes += [
                    helper.make_node("Abs", [rows], [f"{q}_abs"], name=f"{q}_abs"),
                    reduce_max(f"{q}_abs", f"{q}_max"),
                    helper.make_node("Max", [f"{q}_max", f"{const}_tiny"], [f"{q}_top"], name=f"{q}_top"),
                    helper.make_node("Mul", [f"{q}_top", f"{const}_per_code"], [f"{q}_scale"], name=f"{q}_scale"),
                ]
                if not i:  # one zero point per row, for every slice
                    nodes += [
                        helper.make_node("Shape", [f"{q}_scale"], [f"{p}_count"], name=f"{p}_count"),
                        helper.make_node("Expand", [f"{const}_zero_point", f"{p}_count"], [f"{p}_zp"], name=f"{p}_zp"),
                    ]
                nodes += [
                    helper.make_node(
                        "QuantizeLinear", [rows, f"{q}_scale", f"{p}_zp"], [f"{q}_codes"], name=f"{q}_codes", axis=0
                    ),
                    helper.make_node("Unsqueeze", [f"{q}_scale", f"{const}_last"], [f"{q}_col"], name=f"{q}_col"),
                ]
                quantized.append((f"{q}_codes", f"{q}_col"))
            rows_of[x] = (quantized, f"{p}_lead")
        quantized, lead = rows_of[x]
        if weight.name not in coded:  # a weight that several MatMuls share is coded once
            w = f"{const}_w{len(coded)}"
            full = numpy_helper.to_array(weight).astype(np.float32)
            step = k // len(quantized)
            for i in range(len(quantized)):
                w_codes, w_scales = weight_codes(full[i * step : (i + 1) * step], bits)
                graph.initializer.extend(
                    [
                        numpy_helper.from_array(w_codes, f"{w}_codes{i}"),
                        numpy_helper.from_array(w_scales, f"{w}_scale{i}"),
                    ]
                )
            graph.initializer.append(numpy_helper.from_array(np.array([n], np.int64), f"{w}_width"))
            coded[weight.name] = w
        w = coded[weight.name]
        parts_out = []
        for i, (codes, row_scale) in enumerate(quantized):
            nodes += [
                helper.make_node(
                    "MatMulIntegerToFloat",
                    [codes, f"{w}_codes{i}", f"{const}_one", f"{w}_scale{i}", f"{const}_zero_point"],
                    [f"{tag}_cols{i}"],
                    name=f"{tag}_matmul{i}",
                    domain="com.microsoft",
                ),
                helper.make_node("Mul", [f"{tag}_cols{i}", row_scale], [f"{tag}_part{i}"], name=f"{tag}_scaled{i}"),
            ]
            parts_out.append(f"{tag}_part{i}")
        out = parts_out[0]
        if len(parts_out) > 1:
            out = f"{tag}_sum"
            nodes.append(helper.make_node("Sum", parts_out, [out], name=out))
        nodes += [
            helper.make_node("Concat", [lead, f"{w}_width"], [f"{tag}_shape"], name=f"{tag}_shape", axis=0),
            helper.make_node("Reshape", [out, f"{tag}_shape"], [node.output[0]], name=f"{tag}_reshape"),
        ]
        uses[weight.name] -= 1
        if not uses[weight.name]:
            dropped.add(weight.name)
        done += 1
    for index in reversed(range(len(graph.initializer))):  # in place: extend() would copy the embedding table
        if graph.initializer[index].name in dropped:
            del graph.initializer[index]
    if not done:
        return 0
    graph.initializer.extend(shared)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return done
