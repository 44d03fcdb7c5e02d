"""Stage `sweep@<model>`: trials on Dask, chosen on a validation split, the best refit on all training data.

Usage: python stages/sweep.py <model> --base <.json> --data <dataset folder> --model-file <.pt>
           --metrics <.json> --trials <.csv> [--workers N]

Each trial (params.yaml `sweep.<model>` over the params `--base` holds: those of `train.<model>`
that the trials do not set, as the `params` stage wrote them; see regression.search) trains on the training images
less a seeded validation split and is scored on it; the trials run on the Dask cluster that
DASK_SCHEDULER_ADDRESS names, else on a local one (`--workers`, default a worker per core).
The best settings are trained again on every training image and evaluated once on the test
set. Outputs: the refit model, its metrics with the chosen trial and its validation score,
and the table of every trial (each one's settings and scores); the same bytes on any number of workers. MLflow records
the sweep as a parent run with a child run per trial, and registers the refit model as the
`champion`.
"""

import json
import time
from pathlib import Path

from regression import stage
from regression.data import hold_out, load_dataset
from regression.evaluation import score
from regression.files import json_bytes, staged_outputs
from regression.headline import HEADLINE, TEST, TRAIN, VAL, metric
from regression.models import MODELS, model_bytes
from regression.params import ParamsError, check_entry, dataset_names, dataset_problems
from regression.search import CHOSEN_BY, choose, setting_text, settings_of, table_bytes, trials
from regression.sweep_dask import cluster, describe, run_trials
from regression.timing import phases
from regression.training import as_splits, features, new_model, outputs_of, train
from tracking.naming import (
    CHOSEN_TAG,
    CHOSEN_TRIAL_TAG,
    SWEEP_MODEL_TAG,
    TRIAL_TAG,
    TRIALS_TAG,
    sweeps_of,
    version_metric_tags,
)
from tracking.record import Logged, Trained, check, record

SWEEP_PARAM = "sweep."  # before the sweep's own params on its run: apart from the chosen settings


def main(params, args):
    name = args.model
    sweep = params.sweep[name]
    try:
        base = json.loads(args.base.read_text())  # what it searches around
    except (OSError, ValueError) as error:
        raise ParamsError(f"{args.base}: cannot read the params sweep.{name} searches around ({error}); "
                          "`dvc repro params` writes it") from None
    datasets = dataset_names(params.file)
    if problems := dataset_problems(f"sweep.{name}.dataset", sweep.dataset, datasets, base["architecture"], MODELS):
        raise ParamsError("params.yaml: invalid params:\n" + "\n".join(problems))
    settings = [check_entry(name, trial, MODELS, datasets) for trial in trials(base, sweep)]
    trial_params = [s.model_dump() for s in settings]
    spec = MODELS[base["architecture"]]
    with phases("data load"):
        meta, arrays = load_dataset(args.data)
        classes = tuple(meta.get("classes", ()))
        X, y = arrays["train"]
        if sweep.validation_size >= len(X):
            raise ParamsError(f"sweep.{name}.validation_size = {sweep.validation_size}: must be less than "
                              f"the {len(X)} training examples of {args.data}")
        searched, validation = hold_out(X, y, sweep.validation_size, sweep.seed)
    sweep_params = {"model": name, "trials": len(settings)} | {
        key: value for key, value in sweep.model_dump().items() if key != "grid"} | {
        f"grid.{key}": value for key, value in sweep.grid.model_dump().items()}

    check(sweeps_of(meta["name"]))  # a tracking server that does not answer stops the sweep before its trials
    started, results, children = time.time(), [], []
    with phases("trials"), cluster(args.workers, len(settings)) as client:
        print(f"sweep@{name}: {len(settings)} trials on {describe(client)}", flush=True)
        split = {TRAIN: searched, VAL: validation, TEST: arrays[TEST]}
        for result in run_trials(client, name, trial_params, split, classes):
            trial = result["trial"]
            result |= settings_of(trial_params[trial - 1])
            results.append(result)
            print(f"trial {trial}/{len(settings)} {setting_text(settings_of(result))}: "
                  + (", ".join(f"{k} {result[k]:.4f}" for k in CHOSEN_BY if k in result) or result["status"]),
                  flush=True)
            children.append(Trained(trial_params[trial - 1], result["history"], started, time.time(),
                                    "FAILED" if result.get("error") else "FINISHED", result.get("error"),
                                    {TRIAL_TAG: str(trial), SWEEP_MODEL_TAG: name}, f"{name} trial {trial}"))
    children.sort(key=lambda child: int(child.tags[TRIAL_TAG]))
    sweep_params = {SWEEP_PARAM + key: value for key, value in sweep_params.items()}
    recording = dict(model=name, stage=f"sweep@{name}", experiment_key=sweeps_of(meta["name"]), data=meta,
                     children=children)
    sweep_tags = {TRIALS_TAG: str(len(settings))}
    try:
        best = choose(results, spec.classifies)
    except ValueError:
        why = f"sweep.{name}: every trial diverged; try smaller learning rates"
        record(trained=Trained(sweep_params, [], started, time.time(), "FAILED", why, sweep_tags,
                               f"{name} sweep of {len(settings)}"), **recording)
        raise ParamsError(why) from None
    chosen_params, best_params = settings[best["trial"] - 1], trial_params[best["trial"] - 1]
    chosen = {key: value for key, value in best.items() if key not in ("history", "code")} | {
        "settings": settings_of(best_params)}

    with phases("refit"):
        # Scored on the test set after every epoch, as a train stage's model is (for MLflow's
        # curves; the training is the same): the last epoch's scores are the result.
        splits = as_splits({TRAIN: arrays[TRAIN], TEST: arrays[TEST]}, spec)
        model, config = new_model(name, splits[TRAIN], classes, chosen_params)
        history, _ = train(name, spec, model, splits, chosen_params)
        test = splits[TEST]
        test_scores = score(spec, outputs_of(model, test.X), test.y)
    # The metrics file holds the headline numbers only (the validation score that chose the
    # refit, its test scores), so that `dvc metrics show` fits 120 columns: the table of
    # trials has every trial's settings and scores, the chosen one marked.
    scores = {metric(TEST, key): value for key, value in test_scores.items()} | {
        key: chosen[key] for key in CHOSEN_BY if key in chosen}
    headline = {key: scores[key] for key in HEADLINE if key in scores}
    print(f"refit of trial {chosen['trial']} on {len(splits[TRAIN].y)} examples: "
          + ", ".join(f"test {k} {v:.4f}" for k, v in test_scores.items()), flush=True)

    # The sweep's run reads as a train run: the chosen settings as params, per epoch the refit's
    # scores and the chosen trial's validation scores (what chose it).
    chosen_by_epoch = {r["epoch"]: {k: v for k, v in r.items() if k in CHOSEN_BY} for r in best["history"]}
    run_history = [epoch | chosen_by_epoch.get(epoch["epoch"], {}) for epoch in history]
    chosen_text = setting_text(chosen["settings"])
    sweep_tags |= {CHOSEN_TRIAL_TAG: str(chosen["trial"]), CHOSEN_TAG: chosen_text}
    trained = Trained(sweep_params | best_params, run_history, started, time.time(),
                      tags=sweep_tags, name=f"{name} sweep of {len(settings)}")
    weights, table = model_bytes(model, config), table_bytes(results, chosen["trial"])
    with staged_outputs({args.model_file: weights, args.trials: table,
                         args.metrics: json_bytes(headline)}) as publish, phases("recording"):
        logged = Logged(model, config, weights, features(test.X[:5]).numpy(), {"": {args.trials.name: table}},
                        {TRIAL_TAG: str(chosen["trial"]), CHOSEN_TAG: chosen_text} | version_metric_tags(headline),
                        params=best_params, crowned_by=f"sweep {CHOSEN_BY[0]}")
        record(trained=trained, logged=logged, folder=args.data, publish=publish, **recording)
    print(f"{args.model_file}, {args.metrics}, {args.trials} written")


if __name__ == "__main__":
    parser = stage.model_stage_parser(__doc__, "sweep", model_file="where to write the refit model",
                                      metrics="the refit model's metrics (JSON)")
    parser.add_argument("--base", type=Path, required=True,
                        help="the params of train.<model> the trials do not set (JSON, from the params stage)")
    parser.add_argument("--trials", type=Path, required=True, help="the table of trials (CSV)")
    parser.add_argument("--workers", type=int, help="local Dask workers (default: one per core); "
                        "ignored when DASK_SCHEDULER_ADDRESS names a cluster")
    stage.run(main, parser, owns=lambda args: f"sweep.{args.model}")
