"""The CPU's int8 capability and the fp32 fallback for blockwise int8 graphs (models.kernels)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from models.kernels import cpu_flags, dequantize_nbits, has_int8_dot, save_for_session  # noqa: E402


def test_cpu_flags_read_x86_and_arm(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx_vnni\n")
    assert {"avx2", "fma", "avx_vnni"} <= cpu_flags(info)
    assert has_int8_dot(cpu_flags(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\nmodel name\t: AMD EPYC\n")
    assert has_int8_dot(cpu_flags(info)) is False  # AVX2 only: no int8 dot products
    info.write_text("processor\t: 0\nFeatures\t: fp asimd crc32 atomics asimddp\n")
    assert has_int8_dot(cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") is None and has_int8_dot(None) is None


def blockwise_graph(k: int, n: int, block: int, symmetric: bool, accuracy_level: int, seed: int = 0):
    """x (?, k) @ W (k, n) quantized by ONNX Runtime's own MatMulNBits quantizer."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    weight = np.random.default_rng(seed).normal(size=(k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", n])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    quantizer = MatMulNBitsQuantizer(
        model, bits=8, block_size=block, is_symmetric=symmetric, accuracy_level=accuracy_level
    )
    quantizer.process()
    return quantizer.model.model, weight


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("symmetric", [True, False])
def test_dequantized_graph_computes_what_the_int8_weights_encode(symmetric):
    """K = 40 is not a multiple of the block (16): the last block is padded. Accuracy level 1 makes ONNX
    Runtime itself dequantize the weights and multiply in fp32: the rewritten graph must match it."""
    model, weight = blockwise_graph(40, 24, 16, symmetric, accuracy_level=1)
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    x = np.random.default_rng(1).normal(size=(5, 40)).astype(np.float32)
    expected = run(model, x)
    assert dequantize_nbits(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert len(model.graph.initializer) == 1  # the int8 blocks and scales are gone
    got = run(model, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    # and it is the fp32 product up to int8 rounding of the weights
    assert np.abs(got - x @ weight).max() < 0.05 * np.abs(x @ weight).max()


def test_dequantized_graph_keeps_the_bias(tmp_path):
    model, _ = blockwise_graph(256, 8, 16, True, accuracy_level=1)
    node = model.graph.node[0]
    bias = np.arange(8, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(bias, "bias"))
    node.input.extend(["", "", "bias"])  # zero_points, g_idx absent; bias is input 5
    x = np.random.default_rng(2).normal(size=(3, 256)).astype(np.float32)
    expected = run(model, x)
    assert dequantize_nbits(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Add"]
    np.testing.assert_allclose(run(model, x), expected, rtol=1e-5, atol=1e-4)
    # saved for a session with its weights (256 x 8 fp32: over the inline threshold) in a side file
    save_for_session(model, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx.data").stat().st_size >= 256 * 8 * 4
    assert (tmp_path / "model.onnx").stat().st_size < 4096
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-4)


def test_other_graphs_are_left_alone():
    model, _ = blockwise_graph(32, 8, 16, True, accuracy_level=4)
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "bits":
            attribute.i = 4  # a 4-bit node is not ours to rewrite
    before = model.SerializeToString()
    assert dequantize_nbits(model) == 0 and model.SerializeToString() == before


def test_unnamed_nodes_in_a_chain_and_what_is_not_ours(tmp_path):
    """Two MatMulNBits without names (as some quantizers leave them), one after the other, and an initializer
    no node uses (left alone); a node with g_idx is skipped."""
    first, _ = blockwise_graph(32, 32, 16, True, accuracy_level=1, seed=3)
    second, _ = blockwise_graph(32, 8, 16, True, accuracy_level=1, seed=4)
    graph = first.graph
    for init in second.graph.initializer:
        init.name = f"second_{init.name}"
        graph.initializer.append(init)
    node = second.graph.node[0]
    node.input[:] = ["y", *(f"second_{name}" for name in node.input[1:])]
    node.output[:] = ["z"]
    graph.node.append(node)
    for n in graph.node:
        n.name = ""
    graph.output[0].CopyFrom(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["rows", 8]))
    graph.initializer.append(numpy_helper.from_array(np.ones(3, dtype=np.float32), "unused"))
    x = np.random.default_rng(5).normal(size=(4, 32)).astype(np.float32)
    expected = run(first, x)
    assert dequantize_nbits(first) == 2
    assert [n.op_type for n in graph.node] == ["MatMul", "MatMul"]
    assert {i.name for i in graph.initializer} == {n.input[1] for n in graph.node} | {"unused"}
    np.testing.assert_allclose(run(first, x), expected, rtol=1e-5, atol=1e-4)

    with_g_idx, _ = blockwise_graph(32, 8, 16, True, accuracy_level=1)
    with_g_idx.graph.node[0].input.extend(["", "g_idx"])
    assert dequantize_nbits(with_g_idx) == 0


def test_a_bad_blockwise_mode_fails_at_service_start(monkeypatch):
    from pydantic import ValidationError

    from service.settings import ServiceSettings

    monkeypatch.setenv("TRIAGE_ONNX_BLOCKWISE", "fast")
    with pytest.raises(ValidationError, match="onnx_blockwise"):
        ServiceSettings()
    monkeypatch.setenv("TRIAGE_ONNX_BLOCKWISE", "fp32")
    assert ServiceSettings().onnx_blockwise == "fp32"


def test_all_nodes_walks_bodies_at_any_depth():
    from models.kernels import all_nodes

    def identity(name: str, source: str):
        return helper.make_node("Identity", [source], [name], name=name)

    def branch(name: str, then, otherwise):  # an If whose bodies hold one node each
        bodies = {
            key: helper.make_graph(
                [node], f"{name}_{key}", [], [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)]
            )
            for key, node in (("then_branch", then), ("else_branch", otherwise))
        }
        return helper.make_node("If", ["c"], [name], name=name, **bodies)

    outer = branch("outer", branch("inner", identity("deepest", "w"), identity("other", "v")), identity("u2", "u"))
    first = helper.make_node("Identity", ["x"], ["y"], name="first")
    names = [n.name for n in all_nodes([first, outer])]
    assert names[:2] == ["first", "outer"]  # each node before its bodies' nodes, each once
    assert sorted(names) == sorted(["first", "outer", "inner", "deepest", "other", "u2"])
