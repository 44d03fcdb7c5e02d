"""A stand-in for a model stage, for tracking tests: the real stage runner and recording, no torch.

Usage: python tests/fake_stage.py <model> <epochs> <seconds per epoch> [--go-file <path>]

As a model stage does, it asks the store first (`record.check`: a server that does not answer
stops it there), then "trains": sleeps per epoch and prints "epoch <n>", then records the run
(`record.record`, no model; it prints "MLflow run <id> FINISHED: <name>") and prints
"recorded <began> <ended>" (the epoch times when it started and finished recording). With
--go-file it prints "ready" once trained and waits for that file to exist, so that several
stages record at the same moment. Run it from a folder holding a params.yaml;
MLFLOW_TRACKING_URI says where to record.
"""

import os
import time

from regression import stage
from tracking.record import Trained, check, record


def main(params, args):
    dataset = params.file["train"][args.model]["dataset"]  # its experiment's dataset
    data = {"name": dataset, "digest": "0" * 32}
    check(dataset)
    trained = Trained({"model": args.model}, [], started=time.time(), ended=0.0)
    for epoch in range(1, args.epochs + 1):
        time.sleep(args.seconds)
        trained.history.append({"epoch": epoch, "train_loss": 1.0 / epoch})
        print(f"epoch {epoch}", flush=True)
    trained.ended = time.time()
    if args.go_file:
        print("ready", flush=True)
        while not os.path.exists(args.go_file):
            time.sleep(0.005)
    began = time.time()
    record(args.model, f"train@{args.model}", dataset, data, trained, file_params=params.file)
    print(f"recorded {began:.6f} {time.time():.6f}", flush=True)


if __name__ == "__main__":
    parser = stage.parser(__doc__)
    parser.add_argument("model")
    parser.add_argument("epochs", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--go-file")
    stage.run(main, parser)
