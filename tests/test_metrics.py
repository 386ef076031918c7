"""Metrics against values computed by hand."""

import numpy as np
import pytest

from fastdl import metrics

# 3 classes; true / predicted:
#   true 0: predicted 0, 1        true 1: predicted 1, 2        true 2: predicted 2, 2
T = [0, 1, 2, 2, 1, 0]
P = [0, 2, 2, 2, 1, 1]
# confusion (rows true, cols predicted): [[1,1,0],[0,1,1],[0,0,2]]
# precision per class: 1/1, 1/2, 2/3   recall per class: 1/2, 1/2, 2/2
# F1 per class: 2/3, 1/2, 4/5


def test_confusion_matrix():
    np.testing.assert_array_equal(metrics.confusion_matrix(T, P), [[1, 1, 0], [0, 1, 1], [0, 0, 2]])
    assert metrics.confusion_matrix(T, P, num_classes=4).shape == (4, 4)
    with pytest.raises(ValueError, match="num_classes=2"):
        metrics.confusion_matrix(T, P, num_classes=2)


def test_precision_recall_f1_by_hand():
    np.testing.assert_allclose(metrics.precision(T, P, average=None), [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(metrics.recall(T, P, average=None), [1 / 2, 1 / 2, 1])
    np.testing.assert_allclose(metrics.f1_score(T, P, average=None), [2 / 3, 1 / 2, 4 / 5])
    assert metrics.precision(T, P, average="macro") == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
    assert metrics.f1_score(T, P, average="macro") == pytest.approx((2 / 3 + 1 / 2 + 4 / 5) / 3)
    assert metrics.f1_score(T, P, average="micro") == pytest.approx(4 / 6)  # = accuracy
    assert metrics.accuracy(T, P) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="binary"):
        metrics.precision(T, P)


def test_binary_and_input_forms():
    t = np.array([1, 0, 1, 1, 0])
    scores = np.array([0.9, 0.6, 0.4, 0.8, 0.1])  # predicted 1, 1, 0, 1, 0
    assert metrics.precision(t, scores) == pytest.approx(2 / 3)
    assert metrics.recall(t, scores) == pytest.approx(2 / 3)
    assert metrics.f1_score(t, scores) == pytest.approx(2 / 3)
    onehot = np.eye(3)[T]
    probs = np.eye(3)[P] * 0.8 + 0.1
    assert metrics.accuracy(onehot, probs) == pytest.approx(4 / 6)  # rows: argmax
    assert metrics.precision([0, 0], [0, 0]) == 0.0  # no positive predictions: 0, not a crash


def test_streaming_metrics_accumulate_over_batches():
    m = metrics.F1Score(average="macro")  # Keras's: one-hot targets, each row's largest output predicted
    m.update_state(np.eye(3)[T[:3]], np.eye(3)[P[:3]] * 0.8 + 0.1)
    m.update_state(np.eye(3)[T[3:]], np.eye(3)[P[3:]] * 0.8 + 0.1)
    assert m.result() == pytest.approx(metrics.f1_score(T, P, average="macro"))
    a = metrics.SparseCategoricalAccuracy()
    a.update_state(T, np.eye(3)[P])
    assert a.result() == pytest.approx(4 / 6)
    a.reset_state()
    assert a.result() == 0.0
    b = metrics.BinaryAccuracy(threshold=0.7)
    assert b([1, 0, 1], [[0.8], [0.75], [0.2]]) == pytest.approx(1 / 3)
    mae = metrics.MeanAbsoluteError()
    assert mae([1.0, 2.0], [1.5, 1.0]) == pytest.approx(0.75)


def test_get_metric_by_name():
    assert isinstance(metrics.get("acc"), metrics.Accuracy) and metrics.get("acc").name == "acc"  # as Keras logs it
    assert isinstance(metrics.get("f1_score"), metrics.F1Score)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get("auc2")


def test_binary_accuracy_counts_every_label_and_uses_its_threshold():
    t = np.array([[1, 0, 1], [0, 0, 1]])
    p = np.array([[0.9, 0.3, 0.65], [0.1, 0.6, 0.95]])
    assert metrics.BinaryAccuracy()(t, p) == pytest.approx(5 / 6)
    assert metrics.BinaryAccuracy(threshold=0.7)(t, p) == pytest.approx(5 / 6)
    assert metrics.BinaryAccuracy(threshold=0.62)(t, p) == pytest.approx(1.0)
    assert metrics.BinaryAccuracy()([1, 0, 1], [[0.8], [0.3], [0.2]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="y_true has shape"):
        metrics.BinaryAccuracy()(t, p[:, :2])


def test_binary_accuracy_of_scalars():
    assert metrics.BinaryAccuracy()(1.0, 0.7) == 1.0
    assert metrics.BinaryAccuracy()(0.0, 0.7) == 0.0


def test_function_metrics_do_not_count_absent_classes():
    """Without num_classes, an id no sample has is no class (scikit-learn's convention)."""
    t, p = [0, 2, 2, 0], [0, 2, 0, 0]  # class 1 in neither
    assert metrics.precision(t, p, average="macro") == pytest.approx((2 / 3 + 1) / 2)
    np.testing.assert_allclose(metrics.recall(t, p, average=None), [1.0, 0.5])
    assert metrics.precision(t, p, average="macro", num_classes=3) == pytest.approx((2 / 3 + 0 + 1) / 3)
