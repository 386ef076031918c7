# A small CNN on 10x10x1 images: Conv2D (same / valid, strides), BatchNormalization, max and
# average pooling, ZeroPadding2D / Cropping2D / UpSampling2D, LayerNormalization over an image's
# axes, global pooling; trained with SGD momentum, then evaluated and used to predict.
import numpy as np
import keras
from keras import layers

rng = np.random.default_rng(0)
x = rng.standard_normal((96, 10, 10, 1)).astype(np.float32)
labels = (x[:, :5].mean(axis=(1, 2, 3)) > x[:, 5:].mean(axis=(1, 2, 3))).astype(np.int64) + \
    (x[:, :, :5].mean(axis=(1, 2, 3)) > 0).astype(np.int64)


def same_weights(model, scale=0.4):
    """Weights drawn in the model's own order (Keras's: kernel, bias; gamma, beta, moving mean, variance)."""
    draw = np.random.default_rng(1)
    model.set_weights([np.abs(draw.standard_normal(w.shape)).astype(np.float32) + 0.5 if i % 4 == 3 and len(w.shape) == 1
                       and "norm" in name else (draw.standard_normal(w.shape) * scale).astype(np.float32)
                       for i, (w, name) in enumerate(zip(model.get_weights(), names(model)))])


def names(model):
    out = []
    for layer in model.layers:
        out += [layer.name] * len(layer.get_weights())
    return out


RESULT = {}
cnn = keras.Sequential([
    keras.Input((10, 10, 1)),
    layers.Conv2D(4, 3, padding="same", activation="relu"),
    layers.BatchNormalization(momentum=0.8),
    layers.MaxPooling2D(),
    layers.ZeroPadding2D(1),
    layers.Conv2D(6, (3, 2), strides=(1, 2), activation="tanh"),
    layers.BatchNormalization(),
    layers.AveragePooling2D(2, padding="same"),
    layers.Flatten(),
    layers.Dense(3, activation="softmax"),
])
same_weights(cnn)
cnn.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
            metrics=["accuracy"])
h = cnn.fit(x, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
RESULT["cnn"] = {"history": h.history, "weights": cnn.get_weights(),
                 "evaluate": cnn.evaluate(x, labels, batch_size=32, verbose=0),
                 "predict": cnn.predict(x[:10], verbose=0)}

shapes = keras.Sequential([
    keras.Input((10, 10, 1)),
    layers.Cropping2D(((1, 2), (0, 1))),
    layers.UpSampling2D((2, 1)),
    layers.Conv2D(3, 3, strides=2, padding="same", dilation_rate=1),
    layers.LayerNormalization(axis=[1, 2, 3]),
    layers.MaxPooling2D(3, strides=2, padding="same"),
    layers.GlobalMaxPooling2D(),
    layers.Dense(3, activation="softmax"),
])
same_weights(shapes)
shapes.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
h = shapes.fit(x, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
RESULT["shapes"] = {"history": h.history, "weights": shapes.get_weights(), "predict": shapes.predict(x[:10], verbose=0)}

dilated = keras.Sequential([keras.Input((10, 10, 1)), layers.Conv2D(2, 3, dilation_rate=2, padding="same"),
                            layers.GlobalAveragePooling2D(), layers.Dense(3, activation="softmax")])
same_weights(dilated)
dilated.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
h = dilated.fit(x, labels, batch_size=24, epochs=2, shuffle=False, verbose=0)
RESULT["dilated"] = {"history": h.history, "weights": dilated.get_weights()}
