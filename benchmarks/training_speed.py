"""Training speed: the lesson's DataLoader loop against this project's in-memory training.

Both train softmax regression on Fashion-MNIST with the `train.softmax_nn` values of
params.yaml (lr 0.05, batch size 100, weights N(0, 0.01), 10 epochs), in one process with
torch's default thread count, and both wall times include loading the data:

  lesson   torchvision.datasets.FashionMNIST + ToTensor + DataLoader(shuffle=True), a
           nn.Flatten/nn.Linear net, nn.CrossEntropyLoss and optim.SGD; per epoch the train
           loss/accuracy and the test accuracy through a test DataLoader.
  project  regression.data.load_dataset + regression.models.build_model +
           regression.training.train (and, for reference, the softmax_scratch model).

The target is a speed ratio (lesson / project) of at least 20x with the final test
accuracies within 0.5 percentage points. It reports and exits 0 whether or not the
target is met; errors exit non-zero. Nothing is downloaded: the lesson reads the IDX files
the download stage wrote, through symlinks in a temporary folder.

Run from the project root:  PYTHONPATH=src .venv/bin/python benchmarks/training_speed.py
                            [--epochs N] [--data data/fashion-mnist]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn, optim
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from regression.data import FASHION_MNIST_FILES, load_dataset
from regression.models import build_model
from regression.params import load_params
from regression.training import train

TARGET_RATIO = 20.0
TARGET_ACCURACY_GAP = 0.005


IDX_FILES = [name for pair in FASHION_MNIST_FILES.values() for name in pair]


def lesson_root(data: Path, tmp: str) -> str:
    """A root torchvision accepts: <root>/FashionMNIST/raw/<IDX file> -> the files in `data`."""
    raw = Path(tmp) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:
        (raw / name).symlink_to((data / name).resolve())
    return tmp


def lesson_accuracy(net: nn.Module, loader: DataLoader) -> float:
    """Test accuracy batch by batch, as the lesson's evaluate_accuracy does."""
    net.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for X, y in loader:
            correct += (net(X).argmax(dim=1) == y).sum().item()
            total += len(y)
    return correct / total


def run_lesson(root: str, p, epochs: int) -> dict:
    """The lesson's concise softmax regression, data loading included."""
    torch.manual_seed(p.seed)
    to_tensor = transforms.ToTensor()
    train_set = datasets.FashionMNIST(root, train=True, transform=to_tensor, download=False)
    test_set = datasets.FashionMNIST(root, train=False, transform=to_tensor, download=False)
    train_iter = DataLoader(train_set, batch_size=p.batch_size, shuffle=True, num_workers=0)
    test_iter = DataLoader(test_set, batch_size=p.batch_size, shuffle=False, num_workers=0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    nn.init.normal_(net[1].weight, std=p.init_std)
    nn.init.zeros_(net[1].bias)
    loss_fn = nn.CrossEntropyLoss()
    trainer = optim.SGD(net.parameters(), lr=p.lr)
    for epoch in range(1, epochs + 1):
        net.train()
        loss_sum, correct, n = 0.0, 0, 0
        for X, y in train_iter:
            y_hat = net(X)
            loss = loss_fn(y_hat, y)
            trainer.zero_grad()
            loss.backward()
            trainer.step()
            loss_sum += loss.item() * len(y)
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            n += len(y)
        test_acc = lesson_accuracy(net, test_iter)
        print(f"  lesson  epoch {epoch}: train loss {loss_sum / n:.4f}, "
              f"train acc {correct / n:.4f}, test acc {test_acc:.4f}", flush=True)
    return {"test_accuracy": test_acc}


def run_project(name: str, data: Path, p) -> dict:
    """This project's training of one model, data loading included."""
    train_set, test_set = load_dataset(p.dataset, data)
    model = build_model(name, p.init_std, p.seed, n_features=train_set.X.shape[1])
    history = train(name, model, train_set, test_set, p)
    return history[-1]


def timed(label: str, fn, *args) -> tuple[float, float]:
    """(wall seconds, final test accuracy) of one run."""
    start = time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s, test accuracy {result['test_accuracy']:.4f}", flush=True)
    return seconds, result["test_accuracy"]


def main() -> None:
    params = load_params()
    p = params.train["softmax_nn"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=p.epochs)
    parser.add_argument("--data", type=Path, default=Path("data/fashion-mnist"))
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    for name in IDX_FILES:
        if not (args.data / name).is_file():
            sys.exit(f"{args.data / name}: missing; run `dvc repro download` first")
    p = p.model_copy(update={"epochs": args.epochs})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.epochs} epochs, "
          f"batch size {p.batch_size}, lr {p.lr}", flush=True)

    # The project runs first, so any one-off warm-up in torch is charged to it, not the lesson.
    project_s, project_acc = timed("project softmax_nn", run_project, "softmax_nn", args.data, p)
    if "softmax_scratch" in params.train:
        scratch = params.train["softmax_scratch"].model_copy(update={"epochs": args.epochs})
        scratch_s, _ = timed("project softmax_scratch", run_project, "softmax_scratch",
                             args.data, scratch)
    with tempfile.TemporaryDirectory() as tmp:
        lesson_s, lesson_acc = timed("lesson DataLoader loop", run_lesson,
                                     lesson_root(args.data, tmp), p, args.epochs)

    ratio, gap = lesson_s / project_s, abs(lesson_acc - project_acc)
    print(f"\nlesson  {lesson_s:8.2f} s  test accuracy {lesson_acc:.4f}")
    print(f"project {project_s:8.2f} s  test accuracy {project_acc:.4f}  (softmax_nn)")
    if "softmax_scratch" in params.train:
        print(f"scratch {scratch_s:8.2f} s  ratio {lesson_s / scratch_s:.1f}x  (softmax_scratch)")
    print(f"speed ratio lesson / project: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x)")
    print(f"accuracy gap: {100 * gap:.2f} pp (target <= {100 * TARGET_ACCURACY_GAP:.1f} pp)")
    met = ratio >= TARGET_RATIO and gap <= TARGET_ACCURACY_GAP
    print(f"target {'MET' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
