"""ONNX export of a Sequential model (model.export(path, format="onnx")), for inference with
onnxruntime or any ONNX runtime. Needs the `onnx` package (pip install "fastdl[onnx]").

The graph takes "input" of shape (batch,) + input_shape, float32, and returns "output": Dense is
a Gemm, activations their ONNX operators (GELU and SiLU spelled with Erf / Tanh / Sigmoid, which
every opset >= 13 runtime has), Flatten a Flatten, Dropout nothing (inference). Convolutions and
pooling are ONNX's Conv (with its `group` for grouped and depthwise ones) / MaxPool / AveragePool
between transposes (they take channels first), BatchNormalization its inference affine,
LayerNormalization the LayerNormalization operator, Embedding a Gather.
"""

import math

import numpy as np

from . import _files
from .layers import (Activation, BatchNormalization, Cropping2D, Dense, Dropout, Embedding, Flatten, GaussianNoise,
                     Identity, InputLayer, LayerNormalization, Normalization, Reshape, Rescaling, SpatialDropout1D,
                     SpatialDropout2D, UpSampling2D, ZeroPadding2D)
from ._augment_layers import RandomCrop, _Augmentation
from ._conv_layers import _Conv
from ._pooling_layers import _GlobalPooling, _Pooling

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


def _windowed_nodes(helper, layer, x, out, host):
    """(nodes, constants) of the image and text layers (issue #13), or None for other layers. ONNX's
    Conv and pooling take channels first: the channels_last tensor is transposed around them."""
    name, consts = layer.name, {}
    if isinstance(layer, (_Conv, _Pooling)):
        rank = layer.rank
        kh, kw, sh, sw, *rest = layer._geometry
        dh, dw, pt, pl = rest if isinstance(layer, _Conv) else (1, 1) + tuple(rest)
        h, w = layer._image[:2]
        oh, ow = layer._out[:2]
        pb = max((oh - 1) * sh + dh * (kh - 1) + 1 - h - pt, 0)
        pr = max((ow - 1) * sw + dw * (kw - 1) + 1 - w - pl, 0)
        if rank == 1:
            first, back, attrs = [0, 2, 1], [0, 2, 1], dict(kernel_shape=[kw], strides=[sw], pads=[pl, pr])
            dil = [dw]
        else:
            first, back = [0, 3, 1, 2], [0, 2, 3, 1]
            attrs, dil = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=[pt, pl, pb, pr]), [dh, dw]
        nodes = [helper.make_node("Transpose", [x], [f"{name}_cf"], perm=first, name=f"{name}_to_cf")]
        if isinstance(layer, _Conv):
            # (kh, kw, C / groups, F) or (k, C / groups, F); a depthwise (..., C, dm) is (..., 1, C dm)
            kernel = host(layer.weights[0]).astype(np.float32).reshape(layer.kernel_size + (-1, layer.filters))
            consts[f"{name}_kernel"] = np.ascontiguousarray(kernel.transpose((2, 1, 0) if rank == 1 else (3, 2, 0, 1)))
            inputs = [f"{name}_cf", f"{name}_kernel"]
            if layer.use_bias:
                consts[f"{name}_bias"] = host(layer.weights[1]).astype(np.float32)
                inputs.append(f"{name}_bias")
            nodes.append(helper.make_node("Conv", inputs, [f"{name}_y"], dilations=dil, group=layer.groups,
                                          name=f"{name}_conv", **attrs))
            nodes.append(helper.make_node("Transpose", [f"{name}_y"], [f"{name}_z"], perm=back, name=f"{name}_to_cl"))
            act_nodes, act_consts = _activation_nodes(helper, layer.activation, f"{name}_z", out, f"{name}_act")
            consts.update(act_consts)
            return nodes + act_nodes, consts
        op = "MaxPool" if layer.kind == "max" else "AveragePool"
        extra = {} if op == "MaxPool" else dict(count_include_pad=0)  # Keras leaves the padding out
        nodes.append(helper.make_node(op, [f"{name}_cf"], [f"{name}_y"], name=f"{name}_pool", **attrs, **extra))
        nodes.append(helper.make_node("Transpose", [f"{name}_y"], [out], perm=back, name=f"{name}_to_cl"))
        return nodes, consts
    if isinstance(layer, _GlobalPooling):
        op = "ReduceMean" if layer.kind == "avg" else "ReduceMax"
        axes = [1] if layer.rank == 1 else [1, 2]
        return [helper.make_node(op, [x], [out], axes=axes, keepdims=int(layer.keepdims), name=name)], consts
    if isinstance(layer, BatchNormalization):  # inference: y = x scale + shift per channel
        scale, shift = (host(a) for a in layer._inference_affine(np))
        consts[f"{name}_scale"], consts[f"{name}_shift"] = scale.astype(np.float32), shift.astype(np.float32)
        return [helper.make_node("Mul", [x, f"{name}_scale"], [f"{name}_scaled"], name=f"{name}_mul"),
                helper.make_node("Add", [f"{name}_scaled", f"{name}_shift"], [out], name=f"{name}_add")], consts
    if isinstance(layer, LayerNormalization):
        if layer._perm is not None:
            raise ValueError(f"layer {name}: LayerNormalization over axes {layer.axis}, not the trailing ones, has no "
                             f"ONNX export")
        shape = layer.weights[0].shape if layer.weights else None
        norm_rank = len(shape) if shape is not None else 1
        gamma = host(layer.weights[layer._gamma]) if layer._gamma is not None else np.ones(shape or (), np.float32)
        consts[f"{name}_gamma"] = gamma.astype(np.float32)
        inputs = [x, f"{name}_gamma"]
        if layer._beta is not None:
            consts[f"{name}_beta"] = host(layer.weights[layer._beta]).astype(np.float32)
            inputs.append(f"{name}_beta")
        return [helper.make_node("LayerNormalization", inputs, [out], axis=-norm_rank, epsilon=layer.epsilon,
                                 name=name)], consts
    if isinstance(layer, Embedding):
        if layer.mask_zero:
            raise ValueError(f"layer {name}: Embedding(mask_zero=True) has no ONNX export (the mask is not exported)")
        consts[f"{name}_table"] = host(layer.weights[0]).astype(np.float32)
        return [helper.make_node("Cast", [x], [f"{name}_ids"], to=7, name=f"{name}_cast"),  # 7: INT64
                helper.make_node("Gather", [f"{name}_table", f"{name}_ids"], [out], axis=0, name=name)], consts
    if isinstance(layer, ZeroPadding2D):
        (t, b), (l, r) = layer.padding
        consts[f"{name}_pads"] = np.array([0, t, l, 0, 0, b, r, 0], dtype=np.int64)
        return [helper.make_node("Pad", [x, f"{name}_pads"], [out], mode="constant", name=name)], consts
    if isinstance(layer, (Cropping2D, RandomCrop)):  # RandomCrop at inference: the centre window
        if isinstance(layer, RandomCrop):
            t, l = (layer.input_shape[0] - layer.height) // 2, (layer.input_shape[1] - layer.width) // 2
        else:
            (t, _), (l, _) = layer.cropping
        h, w, _ = layer.output_shape
        consts.update({f"{name}_starts": np.array([t, l], np.int64), f"{name}_ends": np.array([t + h, l + w], np.int64),
                       f"{name}_axes": np.array([1, 2], np.int64)})
        return [helper.make_node("Slice", [x, f"{name}_starts", f"{name}_ends", f"{name}_axes"], [out],
                                 name=name)], consts
    if isinstance(layer, _Augmentation):  # the identity at inference
        return [helper.make_node("Identity", [x], [out], name=name)], consts
    if isinstance(layer, UpSampling2D):
        consts[f"{name}_scales"] = np.array([1, layer.size[0], layer.size[1], 1], dtype=np.float32)
        return [helper.make_node("Resize", [x, "", f"{name}_scales"], [out], mode="nearest",
                                 coordinate_transformation_mode="asymmetric", nearest_mode="floor", name=name)], consts
    return None


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
        windowed = _windowed_nodes(helper, layer, current, out, host)
        if windowed is not None:
            act_nodes, consts = windowed
        elif isinstance(layer, Dense):
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
        elif isinstance(layer, (Dropout, Identity, GaussianNoise, SpatialDropout1D, SpatialDropout2D)):  # inference
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
