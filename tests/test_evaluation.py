"""metrics.json's numbers for a handful of predictions, against values worked out by hand."""

import math

import numpy as np
import pytest

from kerasxfer.evaluation import evaluate


def test_per_class_metrics_loss_and_confusion_match_hand_computed_values():
    labels = [0, 0, 1, 1, 2, 2]
    # predictions 0, 1, 1, 1, 2, 0 with these probabilities of the true class: 0.7, 0.3, 0.6, 0.9, 0.8, 0.1
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.5, 0.2], [0.2, 0.6, 0.2], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    m = evaluate(probs, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6) and m["num_images"] == 6
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.6, 0.9, 0.8, 0.1])))
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows: true class, columns: predicted
    # a: predicted twice, right once (precision 1/2), found 1 of its 2 (recall 1/2); b: 2 of 3 and 2 of 2; c: 1 of 1, 1 of 2
    expected = {"a": (1 / 2, 1 / 2), "b": (2 / 3, 1.0), "c": (1.0, 1 / 2)}
    for name, (p, r) in expected.items():
        got = m["per_class"][name]
        assert (got["precision"], got["recall"]) == (pytest.approx(p), pytest.approx(r)), name
        assert got["f1"] == pytest.approx(2 * p * r / (p + r)) and got["support"] == 2
    assert m["labels"] == labels and m["predictions"] == [0, 1, 1, 1, 2, 0]


def test_a_class_never_predicted_has_precision_zero_not_an_error():
    m = evaluate(np.array([[0.9, 0.1], [0.8, 0.2]]), [0, 1], ["x", "y"])
    assert m["per_class"]["y"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert math.isfinite(m["loss"])
