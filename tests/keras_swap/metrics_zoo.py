# Keras 3's metrics in fit and evaluate, with their arguments: Precision / Recall (thresholds, top_k,
# class_id), AUC (ROC, PR), F1Score / FBetaScore (averages, threshold), RootMeanSquaredError,
# MeanAbsolutePercentageError, R2Score, TopK accuracies, weighted metrics, Mean / Sum; AUC with
# multi_label, label_weights and from_logits.
import numpy as np
import keras
from keras import layers, metrics

d = np.load(DATA)
x, onehot, labels = d["x"], d["y_onehot"], d["y"]
w = np.linspace(0.2, 1.8, len(x)).astype("float32")


def mlp(last="softmax"):
    m = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"), layers.Dense(4, activation=last)])
    m.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
    return m


model = mlp()
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
              metrics=[metrics.Precision(), metrics.Recall(thresholds=[0.3, 0.6]),
                       metrics.Precision(top_k=2, name="p_top2"), metrics.Precision(class_id=1, name="p1"),
                       metrics.AUC(), metrics.AUC(curve="PR", num_thresholds=50, name="pr_auc"),
                       metrics.F1Score(average="macro", threshold=0.4, name="f1_macro"),
                       metrics.FBetaScore(beta=2.0, average="weighted", name="f2"),
                       metrics.TopKCategoricalAccuracy(k=2), metrics.RootMeanSquaredError(),
                       metrics.R2Score()],
              weighted_metrics=[metrics.AUC(name="w_auc"), metrics.Precision(name="w_precision")])
history = model.fit(x, onehot, batch_size=64, epochs=2, shuffle=False, verbose=0, sample_weight=w)
RESULT = {"history": history.history,
          "evaluate": model.evaluate(x, onehot, batch_size=100, sample_weight=w, verbose=0, return_dict=True)}

per_class = mlp()
per_class.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=[metrics.F1Score(), metrics.MeanAbsolutePercentageError()])
RESULT["f1_per_class"] = per_class.evaluate(x, onehot, verbose=0, return_dict=True)

sparse = mlp()
sparse.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
               metrics=[metrics.SparseTopKCategoricalAccuracy(k=2)])
RESULT["sparse_top_k"] = sparse.fit(x, labels, batch_size=64, epochs=1, shuffle=False, verbose=0).history

m, s = metrics.Mean(), metrics.Sum()
m.update_state([1.0, 2.0, 6.0]); m.update_state([4.0], sample_weight=[3.0])
s.update_state([[1.0, 2.0], [3.0, 4.0]], sample_weight=[1.0, 0.5])
RESULT["mean_sum"] = [float(m.result()), float(s.result())]

multi = mlp(last="sigmoid")
multi.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
              metrics=[metrics.AUC(multi_label=True, name="ml_auc"),
                       metrics.AUC(multi_label=True, num_labels=4, label_weights=[1.0, 0.0, 2.0, 0.5], curve="PR",
                                   name="ml_pr_auc"),
                       metrics.AUC(label_weights=[0.5, 1.0, 1.0, 2.0], summation_method="minoring", name="lw_auc")])
RESULT["multi_label"] = multi.fit(x, onehot, batch_size=64, epochs=2, shuffle=False, verbose=0,
                                  sample_weight=w).history
logits = mlp(last="linear")
logits.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.BinaryCrossentropy(from_logits=True),
               metrics=[metrics.AUC(from_logits=True, multi_label=True, name="logit_auc")])
RESULT["from_logits"] = logits.evaluate(x, onehot, verbose=0, return_dict=True)
