"""What the layer tests against torch share: a layer built alone, one forward + backward of it,
and the comparison with torch's float64 result."""

import numpy as np

from fastdl import layers, models

RTOL, ATOL = 2e-4, 2e-5


def close(got, want, what, rtol=RTOL, atol=ATOL):
    """got ~ want (a torch tensor or an array), atol scaled by want's largest magnitude."""
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max(initial=0))),
                               err_msg=what)


def alone(layer, input_shape):
    """The layer built in a model of its own (its weights and gradients are views of the model's)."""
    model = models.Sequential([layers.Input(input_shape), layer])
    model.build()
    return model


def run_layer(layer, x, dy, training=True):
    """(output, dx, [weight gradients]) of one forward and backward; every gradient must be written."""
    y = np.array(layer.forward(np.ascontiguousarray(x, dtype=np.float32), training))
    for g in layer.gradients:
        g[...] = np.nan
    dx = layer.backward(np.ascontiguousarray(dy, dtype=np.float32).copy(), True)
    return y, np.array(dx), [np.array(g) for g in layer.gradients]
