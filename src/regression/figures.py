"""Pictures for people: sample images, learning curves, test predictions, confusion matrix, per-class accuracy, fit.

matplotlib's `Figure` is used without pyplot (no global state, no GUI backend); `png_bytes`
gives the same bytes for the same picture.
"""

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from regression.headline import ACCURACY, LOSS, TEST, TRAIN, VAL, metric

PNG_METADATA = {"Software": None}  # no version stamp, so the same picture gives the same bytes
WRONG = "#c0392b"


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata=PNG_METADATA)
    return buffer.getvalue()


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> Figure:
    """The images side by side, each titled with its class name (as the lesson shows them)."""
    figure = Figure(figsize=(1.5 * len(images), 1.9))
    axes = figure.subplots(1, len(images), squeeze=False)[0]
    for ax, image, label in zip(axes, images, labels):
        ax.imshow(image, cmap="gray")
        ax.set_title(classes[int(label)], fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    return figure


def prediction_grid(images: np.ndarray, actual: list[int], predicted: list[int], classes, title: str,
                    columns: int = 8) -> Figure:
    """Test images with the true and the predicted class under each; mistakes framed in red.

    One mosaic in one axes (24 subplots would take three times as long to draw).
    """
    rows = -(-len(images) // columns)
    size, gap = images.shape[1], 22  # image side; the gap below each image holds its labels
    mosaic = np.full((rows * (size + gap), columns * (size + 4)), 255, dtype=np.uint8)
    width = 1.3 * columns
    figure = Figure(figsize=(width, width * mosaic.shape[0] / mosaic.shape[1] / 0.92))
    ax = figure.add_axes((0, 0, 1, 0.92))
    for i, (image, true, guess) in enumerate(zip(images, actual, predicted)):
        top, left = (i // columns) * (size + gap), (i % columns) * (size + 4) + 2
        mosaic[top:top + size, left:left + size] = 255 - image
        wrong = true != guess
        ax.text(left + size / 2, top + size + 2, f"true: {classes[true]}\npred: {classes[guess]}",
                ha="center", va="top", fontsize=7, color=WRONG if wrong else "black",
                fontweight="bold" if wrong else "normal")
        if wrong:
            ax.add_patch(Rectangle((left - 1, top - 1), size + 1, size + 1, fill=False, edgecolor=WRONG,
                                   linewidth=2.5))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255)
    ax.axis("off")
    mistakes = sum(t != p for t, p in zip(actual, predicted))
    figure.suptitle(f"{title}: {mistakes} of {len(images)} wrong (red)", fontsize=10)
    return figure


def confusion_figure(confusion: list[list[int]], classes, title: str) -> Figure:
    figure = Figure(figsize=(7, 6))
    ax = figure.subplots()
    ax.imshow(confusion, cmap="Blues")
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    dark = max(max(counts) for counts in confusion) / 2
    for row, counts in enumerate(confusion):
        for col, count in enumerate(counts):
            ax.text(col, row, count, ha="center", va="center", fontsize=6,
                    color="white" if count > dark else "black")
    figure.tight_layout()
    return figure


def per_class_figure(per_class_accuracy: dict[str, float], title: str) -> Figure:
    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    names, values = list(per_class_accuracy), list(per_class_accuracy.values())
    bars = ax.barh(names[::-1], values[::-1], color="#4c72b0")
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("test accuracy")
    ax.set_title(title)
    figure.tight_layout()
    return figure


def fit_figure(actual: np.ndarray, predicted: np.ndarray, title: str) -> Figure:
    """Predicted against true targets; a perfect fit lies on the diagonal."""
    figure = Figure(figsize=(5, 5))
    ax = figure.subplots()
    ax.scatter(actual, predicted, s=6, alpha=0.6)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color=WRONG, linewidth=1, label="predicted = true")
    ax.set_xlabel("true y")
    ax.set_ylabel("predicted y")
    ax.set_title(title)
    ax.legend(loc="upper left")
    figure.tight_layout()
    return figure


SPLIT_NAMES = {TRAIN: "train", VAL: "validation", TEST: "test"}


def learning_curves(history: list[dict], title: str, loss_name: str, classifies: bool) -> Figure:
    """Loss (and accuracy, where the model has one) per epoch, one line per split, named in the legend.

    A picture of `history.json`, so that the curves show without a browser's charting library
    (`dvc plots show` draws its own charts with one fetched from the internet).
    """
    epochs = [record["epoch"] for record in history]
    kinds = [(LOSS, loss_name)] + ([(ACCURACY, ACCURACY)] if classifies else [])
    figure = Figure(figsize=(5.5 * len(kinds), 4))
    for ax, (kind, label) in zip(figure.subplots(1, len(kinds), squeeze=False)[0], kinds):
        for split, split_name in SPLIT_NAMES.items():
            key = metric(split, kind)
            if key in history[0]:
                ax.plot(epochs, [record[key] for record in history], marker="o", markersize=3, label=split_name)
        values = [record[key] for record in history for key in (metric(TRAIN, kind), metric(TEST, kind))
                  if key in record]
        if kind == LOSS and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")  # e.g. a squared error from 15 down to 1e-4
            label += " (log scale)"
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{title}: {label}")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure
