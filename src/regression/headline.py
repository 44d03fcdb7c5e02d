"""The headline metrics: the numbers a model is judged and compared by, in order of preference, and
how a table shows one (`number`).

A model stage writes those its last epoch has to `metrics/<model>.json` (a regression model adds
its fit: the learned w and b); the registry tags every model version with them; runs and
versions are ranked by the first of them they have (`tracking.registry.rank_key`): validation
accuracy where a validation split was held out, so that settings are not chosen on the test
set; then test accuracy; then, for regression, the lowest test loss.
"""

# name -> +1 if larger is better, -1 if smaller is; in order of preference
HEADLINE = {"val_accuracy": +1, "test_accuracy": +1, "test_loss": -1}


def number(value: float) -> str:
    """A metric as every table shows it: 4 decimals, or 3 significant digits below 0.001."""
    return f"{value:.3g}" if 0 < abs(value) < 0.001 else f"{value:.4f}"
