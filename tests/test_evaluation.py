"""regression.evaluation: scores of a split, the classification and regression reports."""


import pytest
import torch

from regression.evaluation import classification_report, regression_report, score
from regression.models import MODELS, LinearRegression, ModelConfig

# A hand-made 3-class example: true classes and the logits a model gave, row by row.
CLASSES_ABC = ("a", "b", "c")
Y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
LOGITS = torch.tensor([
    [5.0, 1.0, 0.0],   # a -> a
    [0.0, 2.0, 1.0],   # a -> b
    [0.0, 3.0, 1.0],   # b -> b
    [1.0, 4.0, 0.0],   # b -> b
    [2.0, 0.0, 9.0],   # c -> c
    [7.0, 0.0, 1.0],   # c -> a
    [0.0, 0.0, 3.0],   # c -> c
])


def test_classification_report_of_a_hand_made_example():
    report = classification_report(LOGITS, Y, CLASSES_ABC)
    assert report["predicted"] == [0, 1, 1, 1, 2, 0, 2]
    # Rows are true classes, columns predicted ones.
    assert report["confusion"] == [[1, 1, 0],
                                   [0, 2, 0],
                                   [1, 0, 2]]
    assert report["per_class_accuracy"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 2 / 3})
    assert list(report["per_class_accuracy"]) == list(CLASSES_ABC)


def test_score_of_a_classifier_is_mean_loss_and_accuracy():
    scores = score(MODELS["softmax_nn"], LOGITS, Y)
    assert scores.keys() == {"loss", "accuracy"}
    assert scores["accuracy"] == pytest.approx(5 / 7)
    assert scores["loss"] == pytest.approx(torch.nn.functional.cross_entropy(LOGITS, Y).item())
    # The scratch model's hand-written loss scores the same.
    assert score(MODELS["softmax_scratch"], LOGITS, Y) == pytest.approx(scores)


def test_score_of_a_regression_is_mean_squared_error_only():
    outputs, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [2.0]])
    assert score(MODELS["linear"], outputs, y) == pytest.approx({"loss": (0 + 1 + 4) / 3})


def test_regression_report_gives_w_b_and_their_errors():
    model = LinearRegression(ModelConfig("linear", "linear", n_features=2, n_outputs=1))
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[2.1, -3.25]]))
        model.linear.bias.fill_(4.0)

    report = regression_report(model, {"true_w": [2.0, -3.4], "true_b": 4.2})

    assert report == pytest.approx({"w_0": 2.1, "w_1": -3.25, "b": 4.0,
                                    "w_err": 0.15, "b_err": 0.2}, abs=1e-6)  # w_err: the largest
    assert all(type(value) is float for value in report.values())
