# Text: Embedding with mask_zero into GlobalAveragePooling1D (padded steps left out of the mean),
# and Embedding -> Conv1D (causal, same) -> pooling over steps; Adam, then evaluate and predict.
import numpy as np
import keras
from keras import layers

rng = np.random.default_rng(0)
ids = rng.integers(1, 40, (120, 12))
lengths = rng.integers(3, 13, 120)
for row, n in zip(ids, lengths):
    row[n:] = 0  # padding
labels = ((ids == 7).any(axis=1) | (ids == 11).any(axis=1)).astype(np.int64)


def same_weights(model, scale=0.3):
    draw = np.random.default_rng(1)
    model.set_weights([(draw.standard_normal(w.shape) * scale).astype(np.float32) for w in model.get_weights()])


RESULT = {}
bag = keras.Sequential([keras.Input((12,)), layers.Embedding(40, 8, mask_zero=True), layers.Dropout(0.0),
                        layers.GlobalAveragePooling1D(), layers.Dense(2, activation="softmax")])
same_weights(bag)
bag.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
h = bag.fit(ids, labels, batch_size=16, epochs=3, shuffle=False, verbose=0)
RESULT["bag"] = {"history": h.history, "weights": bag.get_weights(),
                 "evaluate": bag.evaluate(ids, labels, verbose=0), "predict": bag.predict(ids[:8], verbose=0)}

conv = keras.Sequential([keras.Input((12,)), layers.Embedding(40, 6),
                         layers.Conv1D(5, 3, padding="causal", activation="relu"),
                         layers.MaxPooling1D(2), layers.Conv1D(4, 2, padding="same"),
                         layers.LayerNormalization(), layers.GlobalMaxPooling1D(),
                         layers.Dense(2, activation="softmax")])
same_weights(conv)
conv.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
h = conv.fit(ids, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
RESULT["conv"] = {"history": h.history, "weights": conv.get_weights(), "predict": conv.predict(ids[:8], verbose=0)}
