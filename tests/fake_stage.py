"""A stand-in for a model stage, for tracking tests: the real stage runner and MLflow run, no torch.

Usage: python tests/fake_stage.py <model> <epochs> <seconds per epoch> [--go-file <path>]

Prints "started <run id> <began> <ended>" once its run has begun (`began` and `ended`: the epoch
times when it started and finished setting up the store and the run), logs one metric per
epoch, and ends like a stage. With --go-file it first prints "ready" and waits for that file to
exist, so that several stages can be released at the same moment once all have started up. Run
it from a folder holding a params.yaml; MLFLOW_TRACKING_URI says where to record.
"""

import os
import time

from regression import stage
from tracking import ModelRun


def main(params, args):
    if args.go_file:
        print("ready", flush=True)
        while not os.path.exists(args.go_file):
            time.sleep(0.005)
    dataset = params.file["train"][args.model]["dataset"]  # its experiment's dataset
    data = {"name": dataset, "digest": "0" * 32, "datasets": {}}
    began = time.time()
    run = ModelRun.start(args.model, {"model": args.model}, data, args.epochs, params.file)
    print(f"started {run.run_id} {began:.6f} {time.time():.6f}", flush=True)
    with run:
        for epoch in range(1, args.epochs + 1):
            time.sleep(args.seconds)
            run.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch})


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("model")
    parser.add_argument("epochs", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--go-file")
    stage.run(main, parser)
