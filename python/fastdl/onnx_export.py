"""ONNX export of a Sequential model (model.export(path, format="onnx")), for inference with
onnxruntime or any ONNX runtime. Needs the `onnx` package (pip install "fastdl[onnx]").

The graph takes "input" of shape (batch,) + input_shape, float32, and returns "output": Dense is
a Gemm, activations their ONNX operators (GELU and SiLU spelled with Erf / Tanh / Sigmoid, which
every opset >= 13 runtime has), Flatten a Flatten, Dropout nothing (inference).
"""

import math

import numpy as np

from . import _files
from .layers import (Activation, Dense, Dropout, Flatten, GaussianNoise, Identity, InputLayer, Normalization, Reshape,
                     Rescaling)

OPSET = 17


def _activation_nodes(helper, act, x, out, prefix):
    """Nodes computing out = act(x); returns (nodes, constant initializers)."""
    name = act.name
    if name == "linear":
        return [helper.make_node("Identity", [x], [out], name=prefix)], {}
    if name in ("relu", "sigmoid", "tanh"):
        return [helper.make_node(name.capitalize(), [x], [out], name=prefix)], {}
    if name == "softmax":
        return [helper.make_node("Softmax", [x], [out], axis=-1, name=prefix)], {}
    if name == "leaky_relu":
        return [helper.make_node("LeakyRelu", [x], [out], alpha=act.alpha, name=prefix)], {}
    if name == "silu":
        return [helper.make_node("Sigmoid", [x], [prefix + "_s"], name=prefix + "_sigmoid"),
                helper.make_node("Mul", [x, prefix + "_s"], [out], name=prefix)], {}
    simple = {"softplus": "Softplus", "softsign": "Softsign", "exponential": "Exp", "selu": "Selu"}
    if name in simple:  # ONNX's Selu defaults are SELU's constants
        return [helper.make_node(simple[name], [x], [out], name=prefix)], {}
    if name == "elu":
        return [helper.make_node("Elu", [x], [out], alpha=act.alpha, name=prefix)], {}
    if name == "hard_sigmoid":  # Keras 3's: clip(x / 6 + 1/2, 0, 1)
        return [helper.make_node("HardSigmoid", [x], [out], alpha=1 / 6, beta=0.5, name=prefix)], {}
    if name == "log_softmax":
        return [helper.make_node("LogSoftmax", [x], [out], axis=-1, name=prefix)], {}
    if name == "mish":  # x tanh(softplus(x)) (Mish is an ONNX op from opset 18 only)
        return [helper.make_node("Softplus", [x], [prefix + "_sp"], name=prefix + "_softplus"),
                helper.make_node("Tanh", [prefix + "_sp"], [prefix + "_t"], name=prefix + "_tanh"),
                helper.make_node("Mul", [x, prefix + "_t"], [out], name=prefix)], {}
    consts = {}

    def const(value):
        key = f"{prefix}_c{len(consts)}"
        consts[key] = np.array(value, dtype=np.float32)
        return key

    if name == "gelu":  # x * (1 + erf(x / sqrt 2)) / 2
        return [helper.make_node("Mul", [x, const(1 / math.sqrt(2))], [prefix + "_a"], name=prefix + "_scale"),
                helper.make_node("Erf", [prefix + "_a"], [prefix + "_e"], name=prefix + "_erf"),
                helper.make_node("Add", [prefix + "_e", const(1.0)], [prefix + "_p"], name=prefix + "_one"),
                helper.make_node("Mul", [x, prefix + "_p"], [prefix + "_xp"], name=prefix + "_mul"),
                helper.make_node("Mul", [prefix + "_xp", const(0.5)], [out], name=prefix)], consts
    if name == "gelu_tanh":  # tanh form: x * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2
        return [helper.make_node("Mul", [x, x], [prefix + "_x2"], name=prefix + "_sq"),
                helper.make_node("Mul", [prefix + "_x2", x], [prefix + "_x3"], name=prefix + "_cube"),
                helper.make_node("Mul", [prefix + "_x3", const(0.044715)], [prefix + "_cx3"], name=prefix + "_c"),
                helper.make_node("Add", [x, prefix + "_cx3"], [prefix + "_in"], name=prefix + "_inner"),
                helper.make_node("Mul", [prefix + "_in", const(math.sqrt(2 / math.pi))], [prefix + "_u"],
                                 name=prefix + "_k"),
                helper.make_node("Tanh", [prefix + "_u"], [prefix + "_t"], name=prefix + "_tanh"),
                helper.make_node("Add", [prefix + "_t", const(1.0)], [prefix + "_p"], name=prefix + "_one"),
                helper.make_node("Mul", [x, prefix + "_p"], [prefix + "_xp"], name=prefix + "_mul"),
                helper.make_node("Mul", [prefix + "_xp", const(0.5)], [out], name=prefix)], consts
    if name == "relu6":
        return [helper.make_node("Clip", [x, const(0.0), const(6.0)], [out], name=prefix)], consts
    raise ValueError(f"activation {name!r} has no ONNX export")


def build_model_proto(model):
    """The onnx.ModelProto of a built Sequential model."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx package: pip install 'fastdl[onnx]'") from None
    model._require_built()
    host = model._device.host  # a GPU model's weights, copied to the host
    nodes, inits = [], []
    current = "input"
    layers = [layer for layer in model.layers if not isinstance(layer, InputLayer)]
    for i, layer in enumerate(layers):
        out = "output" if i == len(layers) - 1 else f"{layer.name}_out"
        if isinstance(layer, Dense):
            w = f"{layer.name}_kernel"
            inits.append(numpy_helper.from_array(host(layer.weights[0]).astype(np.float32), w))
            gemm_in = [current, w]
            if layer.use_bias:
                inits.append(numpy_helper.from_array(host(layer.weights[1]).astype(np.float32), f"{layer.name}_bias"))
                gemm_in.append(f"{layer.name}_bias")
            z = f"{layer.name}_z"
            if len(layer.input_shape) == 1:
                nodes.append(helper.make_node("Gemm", gemm_in, [z], name=f"{layer.name}_gemm"))
            else:  # Dense on the last axis of a higher-rank input: Gemm takes matrices only
                product = z if not layer.use_bias else f"{layer.name}_xw"
                nodes.append(helper.make_node("MatMul", gemm_in[:2], [product], name=f"{layer.name}_matmul"))
                if layer.use_bias:
                    nodes.append(helper.make_node("Add", [product, gemm_in[2]], [z], name=f"{layer.name}_bias_add"))
            act_nodes, consts = _activation_nodes(helper, layer.activation, z, out, f"{layer.name}_act")
        elif isinstance(layer, Activation):
            act_nodes, consts = _activation_nodes(helper, layer.activation, current, out, layer.name)
        elif isinstance(layer, Flatten):
            act_nodes, consts = [helper.make_node("Flatten", [current], [out], axis=1, name=layer.name)], {}
        elif isinstance(layer, (Dropout, Identity, GaussianNoise)):  # the identity at inference
            act_nodes, consts = [helper.make_node("Identity", [current], [out], name=layer.name)], {}
        elif isinstance(layer, Reshape):
            shape = f"{layer.name}_shape"
            act_nodes = [helper.make_node("Reshape", [current, shape], [out], name=layer.name)]
            consts = {shape: np.array((-1,) + tuple(layer.output_shape), dtype=np.int64)}
        elif isinstance(layer, Normalization):
            mean, variance = (host(w).astype(np.float64) for w in layer.weights[:2])
            scale = np.maximum(np.sqrt(variance), layer.EPSILON).astype(np.float32)
            m, sc, mid = f"{layer.name}_mean", f"{layer.name}_scale", f"{layer.name}_mid"
            ops_ = (("Mul", "Add") if layer.invert else ("Sub", "Div"))
            first = [current, sc] if layer.invert else [current, m]
            second = [mid, m] if layer.invert else [mid, sc]
            act_nodes = [helper.make_node(ops_[0], first, [mid], name=f"{layer.name}_a"),
                         helper.make_node(ops_[1], second, [out], name=f"{layer.name}_b")]
            consts = {m: mean.astype(np.float32), sc: scale}
        elif isinstance(layer, Rescaling):
            scale, offset, scaled = f"{layer.name}_scale", f"{layer.name}_offset", f"{layer.name}_scaled"
            act_nodes = [helper.make_node("Mul", [current, scale], [scaled], name=f"{layer.name}_mul"),
                         helper.make_node("Add", [scaled, offset], [out], name=f"{layer.name}_add")]
            consts = {scale: np.array(layer.scale, dtype=np.float32), offset: np.array(layer.offset, dtype=np.float32)}
        else:
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no ONNX export")
        nodes += act_nodes
        inits += [numpy_helper.from_array(v, k) for k, v in consts.items()]
        current = out
    graph = helper.make_graph(
        nodes, model.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *model._input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", *model.output_shape])], inits)
    proto = helper.make_model(graph, producer_name="fastdl", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = min(proto.ir_version, 8)  # readable by onnxruntime releases back to 1.12
    onnx.checker.check_model(proto)
    return proto


def export(model, path):
    proto = build_model_proto(model)
    _files.atomic_write(path, lambda f: f.write(proto.SerializeToString()))
