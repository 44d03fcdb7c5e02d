"""Stage `train@<model>`: train one model, evaluate it on the test set, record it all in one MLflow run.

Usage: python stages/train.py <model> --data <dataset folder> --model-file <.pt>
           --metrics <.json> --history <.json> --evaluation <folder> --figures <folder>
"""

# ruff: noqa: E402 - the collector is off before the imports (see regression.stage.collect_garbage_from_here)
import gc

gc.disable()

import tempfile
from pathlib import Path

import numpy as np

from regression import stage
from regression.data import load_dataset
from regression.files import json_bytes, write_outputs
from regression.models import MODELS, model_bytes
from regression.report import draw_figures, make_report
from regression.timing import phases
from regression.tracking.companion import Companion
from regression.training import as_splits, features, new_model, train

# MLflow's run is kept by a second process, forked now that torch is loaded: it imports MLflow
# while this one reads its params and data, and sets the run up while this one trains.
companion = Companion.launch()


def main(params, args):
    name = args.model
    p = params.train[name]
    spec = MODELS[p.architecture]
    with phases("data load"):
        meta, arrays = load_dataset(args.data)
        splits = as_splits(arrays, spec)
        train_set, test_set = splits["train"], splits["test"]
        classes = tuple(meta.get("classes", ()))
    model, config = new_model(name, train_set, classes, p)

    with phases("tracking setup"):
        run = companion.start(name, p.model_dump() | {"model": name}, meta, p.epochs, params.file,
                              folder=args.data, splits=tuple(splits))
    with run:
        def on_epoch(record):
            print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in record.items()))
            with phases("tracking per epoch"):
                run.log_epoch(record)

        with phases("training"):
            history, outputs = train(name, spec, model, splits, p, on_epoch)
        with phases("evaluation"):
            report = make_report(spec, model, history[-1], outputs["test"], test_set.y, config, meta)
        with phases("figures"):
            figures = draw_figures(name, spec, report, history, outputs["test"], test_set.X, test_set.y, classes)
        # MLflow logs the model, the evaluation and the figures from a scratch folder; the outputs
        # are written after it, all at once, so a stage stopped at any point leaves the last good ones.
        weights = model_bytes(model, config)
        with tempfile.TemporaryDirectory() as scratch, phases("model logging"):
            logged = Path(scratch) / args.model_file.name
            logged.write_bytes(weights)
            files = []
            for folder, contents in (("evaluation", report.files), ("figures", figures)):
                (Path(scratch) / folder).mkdir()
                for file_name, data in contents.items():
                    (Path(scratch) / folder / file_name).write_bytes(data)
                    files.append(Path(scratch) / folder / file_name)
            example = Path(scratch) / "example.npy"
            np.save(example, features(test_set.X[:5]).numpy())
            version = run.finish(logged, example, sorted(files), report.metrics)
        with phases("writing outputs"):
            write_outputs({args.model_file: weights, args.history: json_bytes(history),
                           args.evaluation: report.files, args.figures: figures,
                           args.metrics: json_bytes(report.metrics)})
    print(f"{args.model_file}, {args.metrics} written; model version {version['version']} of {version['name']}")


if __name__ == "__main__":
    parser = stage.model_stage_parser(__doc__, "train", model_file="where to write the model",
                                      metrics="headline metrics (JSON)")
    parser.add_argument("--history", type=Path, required=True, help="per-epoch metrics (JSON)")
    parser.add_argument("--evaluation", type=Path, required=True,
                        help="folder for the test-set predictions, per-class accuracy and confusion matrix")
    parser.add_argument("--figures", type=Path, required=True, help="folder for the figures (PNG)")
    stage.run(main, parser, owns=lambda args: f"train.{args.model}", models=MODELS)
