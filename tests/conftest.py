import pytest
import torch

from idx_files import learnable_split
from regression.data import Split


@pytest.fixture(scope="session")
def tiny_fashion():
    """A learnable 10-class task in Fashion-MNIST's shape: (train, test) Splits scaled to [0, 1]."""
    generator = torch.Generator().manual_seed(0)
    splits = []
    for n in (200, 50):
        images, labels = learnable_split(n, generator)
        splits.append(Split(images.reshape(n, -1).float() / 255, labels.long()))
    return tuple(splits)
