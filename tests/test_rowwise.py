"""Row-wise int8 (training.rowwise) on small hand-built ONNX graphs, run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import GraphProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper  # noqa: E402

from models.kernels import cpu_flags, has_int8_dot  # noqa: E402
from training.rowwise import quantize_rowwise, reference_matmul, weight_codes  # noqa: E402

K, N, H = 24, 16, 40


def graph(seed: int = 0, opset: int = 17) -> tuple[ModelProto, dict[str, np.ndarray]]:
    """x (B, T, K) -> q = x @ Wq, k = x @ Wk (one shared input, as the attention projections), h = relu(q) @ Wo;
    out = h + k @ Wk2 (a weight used twice: it must survive until its last use)."""
    rng = np.random.default_rng(seed)
    weights = {
        "Wq": rng.normal(size=(K, N)).astype(np.float32),
        "Wk": rng.normal(size=(K, N)).astype(np.float32),
        "Wo": rng.normal(size=(N, H)).astype(np.float32),
        "Wk2": rng.normal(size=(N, H)).astype(np.float32),
    }
    weights["Wk2"][:, 3] *= 40  # one output column far larger than the rest: its own scale
    nodes = [
        helper.make_node("MatMul", ["x", "Wq"], ["q"], name="proj_q"),
        helper.make_node("MatMul", ["x", "Wk"], ["k"], name="proj_k"),
        helper.make_node("Relu", ["q"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "Wo"], ["h"], name="out"),
        helper.make_node("MatMul", ["k", "Wk2"], ["k2"], name="second"),
        helper.make_node("MatMul", ["q", "Wk2"], ["q2"], name="shared_weight"),
        helper.make_node("Add", ["h", "k2"], ["s"], name="sum"),
        helper.make_node("Add", ["s", "q2"], ["y"], name="total"),
    ]
    g = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", H])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), weights


def run(model: ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def expected(x: np.ndarray, w: dict[str, np.ndarray], split: int = 0) -> np.ndarray:
    q, k = reference_matmul(x, w["Wq"], split=split), reference_matmul(x, w["Wk"], split=split)
    out = reference_matmul(np.maximum(q, 0), w["Wo"], split=split) + reference_matmul(k, w["Wk2"], split=split)
    return out + reference_matmul(q, w["Wk2"], split=split)


def test_every_constant_matmul_becomes_integer_and_matches_the_row_wise_arithmetic():
    model, weights = graph()
    x = np.random.default_rng(1).normal(size=(3, 5, K)).astype(np.float32)
    x[1, 2] *= 100  # one token far larger than the rest: it gets its own scale
    fp32 = run(model, x)
    assert quantize_rowwise(model) == 5
    types = [n.op_type for n in model.graph.node]
    assert types.count("MatMulIntegerToFloat") == 5 and "MatMul" not in types
    assert types.count("QuantizeLinear") == 4  # x, r, k, q: the projections of x share one quantization
    names = {i.name for i in model.graph.initializer}
    assert not names & set(weights)  # the float weights are gone, the shared one too once both uses are rewritten
    assert sum(i.data_type == TensorProto.INT8 for i in model.graph.initializer) == 4  # Wk2 coded once
    got = run(model, x)
    np.testing.assert_allclose(got, expected(x, weights), rtol=1e-4, atol=1e-3 * np.abs(got).max())
    # and near the float graph: 7-bit weights and 8-bit activations, per row and column
    assert np.abs(got - fp32).max() < 0.05 * np.abs(fp32).max()


def test_a_row_scores_the_same_alone_or_in_any_batch():
    model, _ = graph()
    quantize_rowwise(model)
    x = np.random.default_rng(2).normal(size=(4, 6, K)).astype(np.float32)
    x[3] *= 50  # a loud neighbour must not change the others' scales
    together = run(model, x)
    for i in range(len(x)):
        np.testing.assert_array_equal(run(model, x[i : i + 1])[0], together[i])
    np.testing.assert_array_equal(run(model, x[:, :2]), together[:, :2])  # nor a shorter sequence


def test_wide_inputs_in_slices_follow_the_sliced_arithmetic_and_are_finer():
    model, weights = graph()
    x = np.random.default_rng(5).normal(size=(3, 4, K)).astype(np.float32)
    x[..., :8] *= 30  # the first slice of every row is loud: one scale per row would blur the rest
    fp32 = run(model, x)
    whole, _ = graph()
    quantize_rowwise(whole)
    assert quantize_rowwise(model, split=8) == 5
    splits = [n for n in model.graph.node if n.op_type == "Split"]
    assert len(splits) == 4 and {len(n.output) for n in splits} == {3, 2}  # x: 24 wide; r, k, q: 16 wide
    got = run(model, x)
    np.testing.assert_allclose(got, expected(x, weights, split=8), rtol=1e-4, atol=1e-3 * np.abs(got).max())
    assert np.abs(got - fp32).mean() < 0.9 * np.abs(run(whole, x) - fp32).mean()  # 0.83 here
    for i in range(len(x)):  # still each row by itself
        np.testing.assert_array_equal(run(model, x[i : i + 1])[0], got[i])
    other, _ = graph()
    assert quantize_rowwise(other, split=7) == 5  # no width is a multiple of 7: nothing sliced
    assert not [n for n in other.graph.node if n.op_type == "Split"]


def test_kept_matmuls_stay_float_and_zero_rows_give_zero():
    model, _ = graph()
    assert quantize_rowwise(model, keep={"out", "shared_weight"}) == 3
    kept = {n.name for n in model.graph.node if n.op_type == "MatMul"}
    assert kept == {"out", "shared_weight"}
    assert {"Wo", "Wk2"} <= {i.name for i in model.graph.initializer}  # Wk2 still feeds shared_weight
    assert np.all(run(model, np.zeros((1, 2, K), np.float32)) == 0)


def test_weights_are_symmetric_codes_of_the_asked_bits():
    w = np.random.default_rng(3).normal(size=(K, N)).astype(np.float32)
    for bits, top in ((7, 63), (8, 127)):
        codes, scales = weight_codes(w, bits)
        assert codes.dtype == np.int8 and np.abs(codes).max() == top and codes.min() >= -top
        assert np.all(np.abs(codes * scales - w) <= scales / 2 + 1e-6)  # each column within half its own step
    with pytest.raises(ValueError, match="between 2 and 8"):
        weight_codes(w, 9)


def one_matmul(w: np.ndarray, bits: int) -> ModelProto:
    k, n = w.shape
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="m")],
        "one",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "t", n])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    assert quantize_rowwise(model, bits=bits) == 1
    return model


def test_the_largest_codes_do_not_overflow_the_kernel_on_any_cpu():
    """Activations at their extremes (uint8 codes 255 and 1) times weights at theirs, in pairs of the same sign:
    the worst case for x86 kernels without int8 dot products, which add two uint8 x int8 products in 16 bits
    (2 x 255 x 63 = 32,130 fits; with 8-bit weights 2 x 255 x 127 = 64,770 does not)."""
    w = np.ones((64, 8), np.float32)
    w[:, 1::2] = -1
    x = np.ones((1, 3, 64), np.float32)
    x[0, 1] = -1
    x[0, 2, ::2] = -1
    got = run(one_matmul(w, 7), x)
    np.testing.assert_allclose(got, reference_matmul(x, w), rtol=1e-6)
    assert got[0, 0, 0] == pytest.approx(64.0) and got[0, 1, 0] == pytest.approx(-64.0)
    flags = cpu_flags()
    if flags is not None and "avx2" in flags and has_int8_dot(flags) is False:  # why the default is 7 bits
        eight = run(one_matmul(w, 8), x)
        assert np.abs(eight - reference_matmul(x, w, bits=8)).max() > 1.0  # saturated: 0.51 for 64 on an AVX2 EPYC


def test_newer_opsets_a_second_pass_and_tensors_read_elsewhere():
    x = np.random.default_rng(4).normal(size=(2, 3, K)).astype(np.float32)
    once, weights = graph()
    quantize_rowwise(once)
    expected_out = run(once, x)
    for opset in (18, 21):  # ReduceMax takes its axes as an input from 18 on
        model, _ = graph(opset=opset)
        assert quantize_rowwise(model) == 5
        onnx.checker.check_model(model)
        np.testing.assert_allclose(run(model, x), expected_out, rtol=1e-6, atol=1e-5)
    # two passes (the second finds what the first kept) make no clashing names and the same arithmetic
    twice, _ = graph()
    assert quantize_rowwise(twice, keep={"out"}) == 4 and quantize_rowwise(twice) == 1
    onnx.checker.check_model(twice)
    np.testing.assert_allclose(run(twice, x), expected_out, rtol=1e-6, atol=1e-5)
    # a weight that is also a graph output, or that an If inside an If reads, stays
    model, _ = graph()
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])

    def branch(name: str, node: NodeProto) -> GraphProto:
        out = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
        return helper.make_graph([node], name, [], [out])

    inner = helper.make_node(
        "If",
        ["cond"],
        ["inner"],
        then_branch=branch("t", helper.make_node("Identity", ["Wk"], ["wk_then"])),
        else_branch=branch("e", helper.make_node("Identity", ["Wk"], ["wk_else"])),
    )
    outer = helper.make_node(
        "If",
        ["cond"],
        ["outer"],
        then_branch=helper.make_graph(
            [inner], "ot", [], [helper.make_tensor_value_info("inner", TensorProto.FLOAT, None)]
        ),
        else_branch=branch("oe", helper.make_node("Identity", ["Wo"], ["wo_else"])),
    )
    model.graph.node.append(outer)
    model.graph.input.append(cond)
    model.graph.output.extend(
        [
            helper.make_tensor_value_info("outer", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("Wq", TensorProto.FLOAT, [K, N]),
        ]
    )
    assert quantize_rowwise(model) == 5
    assert {"Wq", "Wk", "Wo"} <= {i.name for i in model.graph.initializer}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, branch_out, wq = session.run(None, {"x": x, "cond": np.array(True)})
    np.testing.assert_allclose(y, expected_out, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(branch_out, weights["Wk"])
    np.testing.assert_array_equal(wq, weights["Wq"])


def test_old_opsets_and_graphs_without_weights_are_left_alone():
    model, _ = graph(opset=13)
    with pytest.raises(ValueError, match="opset 15"):
        quantize_rowwise(model)
    model, _ = graph()
    before = model.SerializeToString()
    assert quantize_rowwise(model, keep={"proj_q", "proj_k", "out", "second", "shared_weight"}) == 0
    assert model.SerializeToString() == before
