"""A stand-in for a model stage, for tracking tests: the real stage runner and MLflow run, no torch.

Usage: python tests/fake_stage.py <model> <epochs> <seconds per epoch> [--wait-until <epoch time>]

Prints "started <run id>" once its run has begun, logs one metric per epoch, and ends like a
stage. Run it from a folder holding a params.yaml; MLFLOW_TRACKING_URI says where to record.
"""

import time

from regression import stage
from regression.tracking import ModelRun


def main(params, args):
    if args.wait_until:  # start several at the same moment
        time.sleep(max(0.0, args.wait_until - time.time()))
    data = {"name": "fake", "digest": "0" * 32, "datasets": {}}
    run = ModelRun.start(args.model, {"model": args.model}, data, args.epochs)
    print(f"started {run.run_id}", flush=True)
    with run:
        for epoch in range(1, args.epochs + 1):
            time.sleep(args.seconds)
            run.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch})


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("model")
    parser.add_argument("epochs", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--wait-until", type=float)
    stage.run(main, parser)
