"""Pictures for people: a grid of sample images, and a confusion matrix."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from regression.data import FASHION_MNIST_CLASSES  # noqa: E402

PNG_METADATA = {"Software": None}  # no version stamp, so the same picture gives the same bytes


def sample_grid(images, labels) -> plt.Figure:
    """The images side by side, each titled with its class name (as the lesson shows them)."""
    figure, axes = plt.subplots(1, len(images), figsize=(1.5 * len(images), 1.9), squeeze=False)
    for ax, image, label in zip(axes[0], images, labels):
        ax.imshow(image, cmap="gray")
        ax.set_title(FASHION_MNIST_CLASSES[int(label)], fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    return figure


def confusion_figure(confusion: list[list[int]], title: str) -> plt.Figure:
    figure, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(confusion, cmap="Blues")
    ticks = range(len(FASHION_MNIST_CLASSES))
    ax.set_xticks(ticks, FASHION_MNIST_CLASSES, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, FASHION_MNIST_CLASSES, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    dark = max(max(counts) for counts in confusion) / 2
    for row, counts in enumerate(confusion):
        for col, count in enumerate(counts):
            ax.text(col, row, count, ha="center", va="center", fontsize=6,
                    color="white" if count > dark else "black")
    figure.colorbar(image)
    figure.tight_layout()
    return figure


def png_bytes(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata=PNG_METADATA)
    plt.close(figure)
    return buffer.getvalue()
