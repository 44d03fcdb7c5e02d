"""A sweep's search space, its trials, the rule that chooses among them, and its table of trials.

A sweep (`sweep.<model>` in params.yaml) lists values for some of a model's training params;
every combination of them, in the order the lists give (the last list varying fastest), is a
trial, or a seeded random sample of them when `sample` is set. A trial is the model's
`train.<model>` params with the combination's values put in: the sweep depends on the rest of them
(`search_base`), not on the values it replaces. Each trial trains on the training
images less a seeded validation split and is scored on that split; `choose` picks the best by
validation score alone, ties going to the earlier trial, so the choice never depends on which
worker finished first. numpy only: no torch here.
"""

import csv
import io
import itertools

import numpy as np

from regression.headline import ACCURACY, LOSS, TEST, VAL, metric
from regression.params_schema import SEARCH_KEYS, SweepParams

CHOSEN_BY = (metric(VAL, ACCURACY), metric(VAL, LOSS))  # what a trial is chosen by, in order
SCORES = (*CHOSEN_BY, metric(TEST, ACCURACY), metric(TEST, LOSS))  # a trial's scores, in its table
TABLE_COLUMNS = ("trial", *SEARCH_KEYS, "status", *SCORES)
FINISHED, DIVERGED = "finished", "diverged"


def search_base(name: str, entry: dict) -> dict:
    """What a sweep of model `name` takes from its entry `train.<name>` (as read): every key but
    those it searches and the dataset (its own), its architecture named. The `params` stage writes it
    for the sweep stage, which depends on it: a change to `train.<name>.lr` leaves the sweep alone,
    one to its `hidden` does not."""
    return {"architecture": name} | {key: value for key, value in entry.items()
                                     if key not in (*SEARCH_KEYS, "dataset")}


def trials(base: dict, sweep: SweepParams) -> list[dict]:
    """The trials of `sweep` over the model's `search_base`, each its full params (unchecked), in
    grid order (sampled if asked)."""
    grid = [getattr(sweep.grid, key) for key in SEARCH_KEYS]
    settings = [base | {"dataset": sweep.dataset} | dict(zip(SEARCH_KEYS, values))
                for values in itertools.product(*grid)]
    if sweep.sample and sweep.sample < len(settings):
        picked = np.random.default_rng(sweep.seed).choice(len(settings), sweep.sample, replace=False)
        settings = [settings[i] for i in sorted(picked.tolist())]
    return settings


def settings_of(params: dict) -> dict:
    """The searched params of a trial: {lr, epochs, batch_size, weight_decay, schedule}."""
    return {key: params[key] for key in SEARCH_KEYS}


def rank_key(result: dict, classifies: bool) -> tuple:
    """Smaller is better: a finished trial before a diverged one; then the higher validation
    accuracy (classifiers), the lower validation loss, the earlier trial."""
    if result["status"] != FINISHED:
        return (1, 0.0, 0.0, result["trial"])
    by_accuracy, by_loss = CHOSEN_BY
    return (0, -result[by_accuracy] if classifies else 0.0, result[by_loss], result["trial"])


def choose(results: list[dict], classifies: bool) -> dict:
    """The best finished trial (see `rank_key`); a ValueError if none finished."""
    best = min(results, key=lambda result: rank_key(result, classifies))
    if best["status"] != FINISHED:
        raise ValueError("every trial diverged")
    return best


def table_bytes(results: list[dict], chosen: int | None = None) -> bytes:
    """The table of trials as CSV, one row per trial in trial order; floats as Python writes them
    (the shortest text that reads back to the same number: the csv module writes their repr),
    empty where a trial diverged. The last column says `yes` on the row of trial `chosen`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*TABLE_COLUMNS, "chosen"))
    for result in sorted(results, key=lambda result: result["trial"]):
        writer.writerow([result.get(column) for column in TABLE_COLUMNS]  # None: an empty field
                        + ["yes" if result["trial"] == chosen else ""])
    return buffer.getvalue().encode()


def setting_text(settings: dict) -> str:
    """A trial's settings as one line: `lr=0.5 epochs=60 ...`."""
    return " ".join(f"{key}={value}" for key, value in settings.items())
