"""The `champion` alias of each registered model: moved to its best version by `make promote`.

Every model stage registers its model as a new version of `<dataset>-<model>` (e.g.
`fashion-mnist-softmax_nn`), tagged with its run, DVC experiment, data digest, git commit and
headline metrics. The champion is chosen by the first of these that some version has:
validation accuracy (`val_accuracy`, when runs held out a validation split), then test
accuracy, then (for regression) the lowest test loss. Choosing on the test set is a fallback,
and `promote` says so when it does.

Usage: python -m regression.registry [--model NAME]   (`make promote`)
"""

import argparse
import sys

ALIAS = "champion"
# (version tag, True if larger is better), in order of preference.
SELECTION = (("val_accuracy", True), ("test_accuracy", True), ("test_loss", False))


def choose(versions) -> tuple[object, str] | None:
    """The best version and the tag it was chosen by; ties go to the earlier version."""
    for metric, larger_is_better in SELECTION:
        scored = [v for v in versions if metric in v.tags]
        if scored:
            sign = 1 if larger_is_better else -1
            return max(scored, key=lambda v: (sign * float(v.tags[metric]), -int(v.version))), metric
    return None


def promote(client, name: str) -> str:
    """Point `champion` at the best version of the registered model `name`; a line saying what it did."""
    chosen = choose(client.search_model_versions(f"name = '{name}'"))
    if chosen is None:
        return f"{name}: no version has a val_accuracy, test_accuracy or test_loss tag; nothing promoted"
    version, metric = chosen
    client.set_registered_model_alias(name, ALIAS, version.version)
    client.set_model_version_tag(name, version.version, "champion.selected_by", metric)
    note = "" if metric == "val_accuracy" else " (no version has a val_accuracy: chosen on the test set)"
    return (f"{name}: {ALIAS} -> version {version.version} ({version.tags.get('run_name', version.run_id)}), "
            f"{metric} {float(version.tags[metric]):.4f}{note}")


def main(argv: list[str] | None = None) -> int:
    from regression.tracking import TrackingError, open_experiment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="one registered model (default: every one)")
    args = parser.parse_args(argv)
    try:
        open_experiment()
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from mlflow import MlflowClient

    client = MlflowClient()
    names = [args.model] if args.model else sorted(m.name for m in client.search_registered_models())
    if not names:
        print("no registered models yet: run the pipeline first (`make run`)")
    for name in names:
        print(promote(client, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
