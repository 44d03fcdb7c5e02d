"""The registry: the one ranking rule, and the `champion` alias of each registered model.

Every model stage registers its model as a new version of `<dataset>-<model>` (e.g.
`fashion-mnist-softmax_nn`, `naming.registered_name`), tagged with its run, DVC experiment, data digest,
git commit and headline metrics. Runs and versions rank by the first headline metric they have
(`rank_key`: validation accuracy, then test accuracy, then the lowest test loss; see
`regression.headline`); `make compare` and `make sweep` list runs in that order, and `promote`
points `champion` at the best version whose claims hold: its run recorded them, and its own model,
scored again on the project's test set of the data it was trained on, scores what it claims there.
Choosing on the test set is a fallback, and `promote` says so when it does.

Usage: python -m tracking.registry [--model NAME]   (`make promote`)
"""

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

from regression.headline import HEADLINE, TEST, number, split_of
from tracking.access import one_line, require
from tracking.naming import DIGEST_TAG, RUN_NAME_TAG, SELECTED_BY_TAG
from tracking.searching import PAGE_SIZE, every, versions_tagged
from tracking.store import TrackingError, opened, project_root, tracking_uri

ALIAS = "champion"
WIDTH = 120  # columns of a line printed


def rank_key(metrics: dict[str, float]) -> tuple:
    """Sorts the best first: by the first headline metric present, ties broken by the next ones."""
    return tuple((name not in metrics, -sign * metrics.get(name, 0.0)) for name, sign in HEADLINE.items())


# rank_key as the store's order_by: a run without a metric, or with NaN, sorts after those with it.
RANK_ORDER = [f"metrics.`{name}` {'DESC' if sign > 0 else 'ASC'}" for name, sign in HEADLINE.items()]


def deciding_metric(metrics: dict[str, float]) -> str | None:
    """The headline metric `rank_key` ranks by first, None if there is none."""
    return next((name for name in HEADLINE if name in metrics), None)


def claimed(version) -> dict[str, float]:
    """The headline metrics a version's tags claim."""
    return {name: float(version.tags[name]) for name in HEADLINE if name in version.tags}


def ranked(versions) -> list:
    """The versions with a headline metric, best first by what they claim; ties go to the earlier version."""
    return sorted((v for v in versions if deciding_metric(claimed(v))),
                  key=lambda v: (rank_key(claimed(v)), int(v.version)))


def unfounded(client, version) -> str | None:
    """What a version claims that its run did not record (an editor may tag a version, not rewrite a
    run's history), or None: 'it claims val_accuracy 0.999, its run recorded 0.8599'."""
    recorded = client.get_run(version.run_id).data.metrics
    for name, value in claimed(version).items():
        if name not in recorded or f"{recorded[name]:.6g}" != f"{value:.6g}":
            return (f"it claims {name} {value:.6g}, its run recorded "
                    f"{number(recorded[name]) if name in recorded else 'none'}")
    return None


def unreproduced(version) -> str | None:
    """What a version claims on the test set that its own model does not score there, or None:
    'it claims test_accuracy 0.99, its model scores 0.8331 on fashion-mnist's test set'. The model is
    the version's (downloaded), the test set that of the dataset in data/ with the version's digest."""
    claims = claimed(version)
    figure = next((key for key in HEADLINE if split_of(key) == TEST and key in claims), None)
    digest = version.tags.get(DIGEST_TAG)
    if figure is None or not digest:
        return "it claims no test-set figure to check" if figure is None else "it names no data digest"
    if (folder := dataset_with_digest(digest)) is None:
        return f"no dataset in data/ has its data digest {digest} (`dvc repro` makes this project's)"
    import mlflow

    from regression.data import load_split
    from regression.evaluation import score
    from regression.models import MODELS, load_model
    from regression.training import as_splits, outputs_of

    with tempfile.TemporaryDirectory() as scratch:
        try:
            uri = f"models:/{version.name}/{version.version}"
            mlflow.artifacts.download_artifacts(uri, dst_path=scratch)
            files = list(Path(scratch).glob("artifacts/*.pt"))
            if len(files) != 1:
                raise FileNotFoundError(f"{uri} holds no model file")
            model, config = load_model(files[0])
            spec = MODELS[config.architecture]
            test = as_splits({TEST: load_split(folder, TEST)}, spec)[TEST]
            got = score(spec, outputs_of(model, test.X), test.y)[figure.partition("_")[2]]
        except Exception as error:  # noqa: BLE001 - whatever stops the check refuses the version
            return f"its model cannot be scored ({one_line(error)})"
    if f"{got:.6g}" != f"{claims[figure]:.6g}":
        return f"it claims {figure} {claims[figure]:.6g}, its model scores {got:.6g} on {folder.name}'s test set"
    return None


def dataset_with_digest(digest: str) -> Path | None:
    """The folder of data/ whose dataset's meta has `digest`, None if none has."""
    from regression.data import META, DataError, read_meta

    for meta in sorted((project_root() / "data").glob(f"*/{META}")):
        with contextlib.suppress(DataError):  # not a dataset's: not the one
            if read_meta(meta.parent).get("digest") == digest:
                return meta.parent
    return None


def crown(client, name: str, version: str, chosen_by: str) -> None:
    """Point `champion` at `version` of the registered model `name`, tagged with what chose it."""
    client.set_registered_model_alias(name, ALIAS, version)
    client.set_model_version_tag(name, version, SELECTED_BY_TAG, chosen_by)


def crowning(name: str) -> tuple[str, str, str, str, str, str]:
    """What moving the registered model `name`'s `champion` needs, as `access.require` and
    `access.shortfall` ask it: MANAGE on that model, on the store."""
    return (tracking_uri(), "MANAGE", "registered_model", name, f"registered model '{name}'",
            f"moving its {ALIAS} alias")


def promote(client, name: str, page_size: int = PAGE_SIZE) -> str:
    """Point `champion` at the best of every version of the registered model `name` (all read:
    their metrics are tags, which the store cannot rank); a line saying what it did."""
    candidates = ranked(versions_tagged(client, name, HEADLINE, page_size))
    if not candidates:
        return f"{name}: no version has a {', '.join(HEADLINE)} tag; nothing promoted"
    require(*crowning(name))
    lines = []
    for candidate in candidates:  # the best whose claims its run and its model bear out
        version = client.get_model_version(name, candidate.version)
        if why := unfounded(client, version) or unreproduced(version):
            lines.append(f"{name}: version {version.version} not crowned: {why}")
            continue
        metric = deciding_metric(claimed(version))
        crown(client, name, version.version, metric)
        note = "" if metric == next(iter(HEADLINE)) else ", chosen on the test set (no validation split)"
        run, value = version.tags.get(RUN_NAME_TAG, version.run_id), float(version.tags[metric])
        lines += [f"{name}: {ALIAS} -> version {version.version}, {metric} {value:.4g}{note}", f"    from run '{run}'"]
        break
    else:
        lines.append(f"{name}: no version's claims are borne out by its run and its model; nothing promoted")
    return "\n".join(line if len(line) <= WIDTH else line[:WIDTH - 1] + "…" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="one registered model (default: every one)")
    args = parser.parse_args(argv)
    try:
        if opened() is None:
            return 1
        from mlflow import MlflowClient

        client = MlflowClient()
        names = [args.model] if args.model else sorted(m.name for m in every(client.search_registered_models))
        if not names:
            print("no registered models yet: run the pipeline first (`make run`)")
        for name in names:
            print(promote(client, name), flush=True)
    except TrackingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while it scores a model: the aliases said above moved, no other
        print("interrupted: only the champions said above have moved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
