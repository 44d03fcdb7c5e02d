"""Stage `train@<model>`: train one model, evaluate it on the test set, record it all in one MLflow run.

Usage: python stages/train.py <model> --data <dataset folder> --model-file <.pt>
           --metrics <.json> --history <.json> --evaluation <folder> --figures <folder>
"""

import time
from pathlib import Path

from regression import stage
from regression.data import load_dataset
from regression.files import json_bytes, staged_outputs
from regression.models import MODELS, model_bytes
from regression.report import draw_figures, make_report
from regression.timing import phases
from regression.training import TrainingDiverged, as_splits, features, new_model, train
from tracking.naming import version_metric_tags
from tracking.record import Logged, Trained, check, record


def main(params, args):
    name = args.model
    p = params.train[name]
    spec = MODELS[p.architecture]
    meta, arrays = load_dataset(args.data)
    check(meta["name"])  # a tracking server that does not answer stops the stage before training
    splits = as_splits(arrays, spec)
    train_set, test_set = splits["train"], splits["test"]
    classes = tuple(meta.get("classes", ()))
    model, config = new_model(name, train_set, classes, p)

    history = []

    def on_epoch(epoch: dict) -> None:
        print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in epoch.items()))
        history.append(epoch)

    trained = Trained(p.model_dump() | {"model": name}, history, started=time.time(), ended=0.0)
    recording = dict(model=name, stage=f"train@{name}", experiment_key=meta["name"], data=meta,
                     folder=args.data, file_params=params.file)
    try:
        with phases("training"):
            _, outputs = train(name, spec, model, splits, p, on_epoch)
    except TrainingDiverged as error:
        trained.ended, trained.status, trained.reason = time.time(), "FAILED", str(error)
        record(trained=trained, **recording)
        raise
    trained.ended = time.time()
    with phases("evaluation"):
        report = make_report(spec, model, history[-1], outputs["test"], test_set.y, config, meta)
    figures = draw_figures(name, spec, report, history, outputs["test"], test_set.X, test_set.y, classes)
    weights = model_bytes(model, config)
    # Written beside their places first; moved into place only once the run is recorded.
    with staged_outputs({args.model_file: weights, args.history: json_bytes(history),
                         args.evaluation: report.files, args.figures: figures,
                         args.metrics: json_bytes(report.metrics)}) as publish, phases("recording"):
        logged = Logged(model, config, weights, features(test_set.X[:5]).numpy(),
                        {"evaluation": report.files | figures}, version_metric_tags(report.metrics),
                        params=trained.params)
        version = record(trained=trained, logged=logged, publish=publish, **recording)
    print(f"{args.model_file}, {args.metrics} written; model version {version.version} of {version.name}")


if __name__ == "__main__":
    parser = stage.model_stage_parser(__doc__, "train", model_file="where to write the model",
                                      metrics="headline metrics (JSON)")
    parser.add_argument("--history", type=Path, required=True, help="per-epoch metrics (JSON)")
    parser.add_argument("--evaluation", type=Path, required=True,
                        help="folder for the test-set predictions, per-class accuracy and confusion matrix")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the figures (PNG)")
    stage.run(main, parser, owns=lambda args: f"train.{args.model}", models=MODELS)
