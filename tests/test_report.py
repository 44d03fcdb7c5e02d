"""regression.report: a trained model's headline metrics, evaluation files and figures."""

import csv
import io
import json

import pytest

from regression.report import draw_figures, make_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report_of(setup):
    """Train `setup`; return (report, last record, test outputs)."""
    history, outputs = setup.train()
    test_y = setup.splits["test"].y
    report = make_report(setup.spec, setup.model, history[-1], outputs["test"], test_y,
                         setup.config, setup.meta)
    return report, history[-1], outputs["test"]


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode())))


def test_linear_report_has_the_test_loss_and_the_fit_of_w_and_b(trainable):
    setup = trainable("linear")
    report, last, _ = report_of(setup)

    assert set(report.metrics) == {"test_loss", "w_0", "w_1", "b"}  # test_loss: the MSE
    assert all(type(value) is float for value in report.metrics.values())
    assert report.metrics["test_loss"] == last["test_loss"]
    assert report.metrics["w_1"] == pytest.approx(-3.4, abs=0.01)
    fit = json.loads(report.files["fit.json"])  # the errors, beside the learned and true values
    assert {key: fit[key] for key in ("w_0", "w_1", "b")} == {k: report.metrics[k] for k in ("w_0", "w_1", "b")}
    assert fit["true_w"] == [2.0, -3.4] and fit["true_b"] == 4.2
    assert fit["b_err"] == pytest.approx(abs(report.metrics["b"] - 4.2))
    assert fit["w_err"] == pytest.approx(max(abs(report.metrics["w_0"] - 2), abs(report.metrics["w_1"] + 3.4)))
    rows = read_csv(report.files["predictions.csv"])
    assert rows[0] == ["actual", "predicted"] and len(rows) == 1 + len(setup.splits["test"].y)


@pytest.mark.parametrize("name", ["softmax_scratch", "softmax_nn"])
@pytest.mark.parametrize("validation", [0, 40], ids=["train-test", "with-validation"])
def test_classifier_report_has_test_accuracy_and_loss(trainable, name, validation):
    setup = trainable(name, validation=validation)
    report, last, _ = report_of(setup)

    expected = {"test_accuracy", "test_loss"} | ({"val_accuracy"} if validation else set())
    assert set(report.metrics) == expected
    assert all(type(value) is float for value in report.metrics.values())
    assert all(report.metrics[key] == last[key] for key in expected)


def test_classifier_report_files_agree_with_each_other(trainable):
    setup = trainable("softmax_nn")
    report, last, outputs = report_of(setup)
    classes, test_y = setup.config.classes, setup.splits["test"].y.tolist()

    rows = read_csv(report.files["predictions.csv"])
    assert rows[0] == ["actual", "predicted"]
    assert [classes.index(actual) for actual, _ in rows[1:]] == test_y
    assert [classes.index(predicted) for _, predicted in rows[1:]] == outputs.argmax(dim=1).tolist()

    confusion = json.loads(report.files["confusion_matrix.json"])
    assert confusion["classes"] == list(classes)
    matrix = confusion["rows_true_columns_predicted"]
    assert sum(map(sum, matrix)) == len(test_y)
    correct = sum(matrix[i][i] for i in range(len(classes)))
    assert correct / len(test_y) == pytest.approx(last["test_accuracy"])

    per_class = json.loads(report.files["per_class_accuracy.json"])
    assert [entry["class"] for entry in per_class] == list(classes)
    assert all(0.0 <= entry["accuracy"] <= 1.0 for entry in per_class)


@pytest.mark.parametrize("name, figures", [
    ("linear", {"learning_curves.png", "fit.png"}),
    ("softmax_nn", {"learning_curves.png", "confusion_matrix.png", "per_class_accuracy.png",
                    "test_predictions.png"}),
])
def test_figures_are_pngs_identical_for_identical_input(trainable, name, figures):
    setup = trainable(name)
    history, outputs = setup.train()
    report = make_report(setup.spec, setup.model, history[-1], outputs["test"], setup.splits["test"].y,
                         setup.config, setup.meta)
    test_set = setup.splits["test"]

    def draw():
        return draw_figures(name, setup.spec, report, history, outputs["test"], test_set.X, test_set.y,
                            setup.config.classes)

    first, again = draw(), draw()
    assert set(first) == figures
    assert all(data.startswith(PNG_SIGNATURE) for data in first.values())
    assert first == again
