"""Pictures for people: sample images, test predictions, confusion matrix, per-class accuracy, fit.

matplotlib's `Figure` is used without pyplot (no global state, no GUI backend); `png_bytes`
gives the same bytes for the same picture.
"""

import io

import numpy as np
from matplotlib.figure import Figure

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
    """Test images with the true and the predicted class under each; mistakes in red, framed."""
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(1.45 * columns, 1.75 * rows + 0.4))
    axes = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for ax, image, true, guess in zip(axes, images, actual, predicted):
        ax.imshow(image, cmap="gray_r")
        wrong = true != guess
        ax.set_xlabel(f"true: {classes[true]}\npred: {classes[guess]}", fontsize=7,
                      color=WRONG if wrong else "black", fontweight="bold" if wrong else "normal")
        if wrong:
            ax.set_frame_on(True)
            for spine in ax.spines.values():
                spine.set_color(WRONG)
                spine.set_linewidth(2.5)
    mistakes = sum(t != p for t, p in zip(actual, predicted))
    figure.suptitle(f"{title}: {mistakes} of {len(images)} wrong (red)", fontsize=10)
    figure.tight_layout()
    return figure


def confusion_figure(confusion: list[list[int]], classes, title: str) -> Figure:
    figure = Figure(figsize=(7, 6))
    ax = figure.subplots()
    image = ax.imshow(confusion, cmap="Blues")
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
    figure.colorbar(image)
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
