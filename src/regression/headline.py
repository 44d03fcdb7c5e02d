"""The metrics' names, the headline metrics, and how a table shows one (`number`, `short`).

Every record, file, run and table names a split's score `<split>_<score>` (`metric`): `train_loss`,
`val_accuracy`, `test_loss`. The headline metrics are those a model is judged and compared by, in
order of preference. A model stage writes those its last epoch has to `metrics/<model>.json` (a
regression model adds its fit: the learned w and b); the registry tags every model version with
them; runs and versions are ranked by the first of them they have (`tracking.registry.rank_key`):
validation accuracy where a validation split was held out, so that settings are not chosen on the
test set; then test accuracy; then, for regression, the lowest test loss.
"""

LOSS, ACCURACY = "loss", "accuracy"  # a split's scores (`evaluation.score`); a regressor has no accuracy
TRAIN, VAL, TEST = "train", "val", "test"  # the splits a model is scored on (`data.SPLITS`)
FIT_ERROR = "_err"  # ends the names of a regressor's fit errors (`w_err`, `b_err`)


def metric(split: str, score: str) -> str:
    """A split's score as everything names it: metric(VAL, ACCURACY) == 'val_accuracy'."""
    return f"{split}_{score}"


def split_of(name: str) -> str:
    """The split a metric is of: split_of('val_accuracy') == 'val'."""
    return name.partition("_")[0]


def scores(classifies: bool) -> tuple[str, ...]:
    """The scores of a split a model has: a classifier's loss and accuracy, a regressor's loss."""
    return (LOSS, ACCURACY) if classifies else (LOSS,)


def has(name: str, classifies: bool) -> bool:
    """Whether a model of this kind has the metric `name`."""
    return name.partition("_")[2] in scores(classifies)


# name -> +1 if larger is better, -1 if smaller is; in order of preference
HEADLINE = {metric(VAL, ACCURACY): +1, metric(TEST, ACCURACY): +1, metric(TEST, LOSS): -1}


def ranked_by(classifies: bool) -> str:
    """The first headline metric every run of such a model has, with or without a validation split."""
    return next(name for name in HEADLINE if split_of(name) == TEST and has(name, classifies))


def short(name: str) -> str:
    """A metric's name as a narrow table heads its column: 'test_acc'."""
    return name.replace(ACCURACY, "acc")


def number(value: float) -> str:
    """A metric as every table shows it: 4 decimals, or 3 significant digits below 0.001."""
    return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.4f}"
