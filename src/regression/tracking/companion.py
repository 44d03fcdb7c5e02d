"""A train stage's MLflow run kept by a second process, so MLflow's import and the store's setup
run beside the stage's training instead of before it.

The stage forks its companion once it has imported torch (`Companion.launch`: the companion
shares that torch, which logging the model needs, instead of importing it again), then hands it
the run's start once it has read its params and data (`start`), each epoch's metrics
(`log_epoch`) and the model (`finish`), and ends it with the outcome of its `with` block. The
companion imports MLflow while the stage reads its params and data, and does what `ModelRun`
does, in the order it was asked. Commands go down one pipe, one JSON line each; answers come
back up another, so both processes keep the stage's stdout and stderr for what they print.

The stage waits only for answers it needs: the run's start (if training ended before the
companion had set up: the stage's "tracking setup" phase), the model version ("model logging"),
and the run's end ("tracking end"). The companion's own time to open the store and start the
run, beside the stage's, is recorded as "companion: run start".

Failures: a server that does not answer fails the stage before training, as before; any other
tracking error comes back as the one line `ModelRun` raises, and the stage raises it at its next
epoch or at `finish`, writing no outputs. The companion runs in its own session, so a terminal's
Ctrl-C reaches only the stage, which ends the run KILLED through it; if the stage's process is
gone without ending the run (`kill -9`), the companion's commands end and it ends the run KILLED
itself.
"""

import json
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path

from regression import PipelineError, stage
from regression.timing import phases
from regression.tracking.store import TrackingError, check_server, is_server, tracking_uri

GONE = "the stage's process ended without ending the run"  # the run's status reason then


class Companion:
    """The stage's side: a run's commands sent ahead, its answers read when needed."""

    def __init__(self, pid: int, commands, answers):
        self.pid, self.commands, self.answers = pid, commands, answers
        self.run_id: str | None = None
        self.ended = False
        self.forget_on_interrupt = lambda: None  # set by `start`

    @classmethod
    def launch(cls) -> "Companion":
        """Fork the companion from the stage, once the stage has imported torch: the companion
        shares the stage's torch (the model logging needs it) instead of importing it again. The
        stage has one thread then (the numerics pin one; nothing has trained yet), which makes
        forking safe."""
        commands_read, commands_write = os.pipe()
        answers_read, answers_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setsid()  # a terminal's Ctrl-C reaches the stage only
                for signum in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_DFL)
                os.close(commands_write)
                os.close(answers_read)
                with os.fdopen(commands_read) as commands:
                    code = main(answers_write, commands)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)  # none of the stage's clean-up: it is the stage's
        os.close(commands_read)
        os.close(answers_write)
        return cls(pid, os.fdopen(commands_write, "w"), os.fdopen(answers_read, "rb", buffering=0))

    def start(self, model: str, params: dict, data: dict, epochs: int, file_params: dict, folder: Path,
              splits: tuple[str, ...]) -> "Companion":
        """As `ModelRun.start`, without waiting for it; a server that does not answer fails here."""
        uri = tracking_uri()
        if is_server(uri):
            check_server(uri)
        self.send("start", model=model, params=params, data=data, epochs=epochs, file_params=file_params,
                  folder=str(folder), splits=list(splits))
        self.forget_on_interrupt = stage.on_interrupt(lambda: self.end("KILLED"))
        return self

    def __enter__(self) -> "Companion":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        interrupted = kind is not None and issubclass(kind, stage.Interrupted)
        self.end("FINISHED" if kind is None else "KILLED" if interrupted else "FAILED")

    def log_epoch(self, record: dict) -> None:
        self.send("epoch", record=record)
        while select.select([self.answers], [], [], 0)[0]:  # the start's answer, or an error
            self.take(self.answer())

    def finish(self, model_file: Path, example_file: Path, files: list[Path], metrics: dict) -> dict:
        """As `ModelRun.finish`, from the model's file and its input example's (.npy): the version
        registered, as {"name": ..., "version": ...}."""
        with phases("tracking setup"):  # what training did not cover
            while self.run_id is None:
                self.take(self.answer())
        self.send("finish", model_file=str(model_file), example_file=str(example_file),
                  files=[str(path) for path in files], metrics=metrics)
        return self.answer()

    def end(self, status: str) -> None:
        """End the run with `status` and wait for the companion to exit; raise what it reported."""
        if self.ended:
            return
        self.ended = True
        self.forget_on_interrupt()
        try:
            with phases("tracking end"):
                self.send("end", status=status)
                while "ended" not in self.answer():
                    pass
        finally:
            self.answers.close()
            self.wait()

    def send(self, command: str, **fields) -> None:
        try:
            self.commands.write(json.dumps({"command": command} | fields) + "\n")
            self.commands.flush()
        except (BrokenPipeError, ValueError):  # it has exited: its last answer says why
            self.answer()
            raise TrackingError(f"MLflow run {self.run_id}: the tracking companion exited") from None

    def answer(self) -> dict:
        line = self.answers.readline()
        if not line:
            self.ended = True
            raise TrackingError(f"the tracking companion of MLflow run {self.run_id} exited "
                                f"(status {self.wait()}) without answering")
        answer = json.loads(line)
        if "error" in answer:
            self.ended = True
            raise TrackingError(answer["error"])
        return answer

    def wait(self) -> int:
        """The companion's exit status, once it has exited."""
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])

    def take(self, answer: dict) -> None:
        """The start's answer: the run, and how long the companion took to open the store and start it."""
        if "run_id" in answer:
            self.run_id = answer["run_id"]
            phases.add("companion: run start", answer["seconds"])


def keep(commands, reply) -> None:
    """The companion's side: do each command with a `ModelRun`; end it KILLED if the stage goes away."""
    import numpy as np

    from regression.models import load_model
    from regression.tracking.naming import STATUS_REASON_TAG
    from regression.tracking.run import ModelRun

    run = None
    for line in commands:
        if not line.endswith("\n"):  # cut short: the stage died writing it
            break
        command = json.loads(line)
        kind = command.pop("command")
        if kind == "start":  # ends its run itself if it fails
            command |= {"folder": Path(command["folder"]), "splits": tuple(command["splits"])}
            began = time.perf_counter()
            run = ModelRun.start(**command)
            reply(run_id=run.run_id, seconds=time.perf_counter() - began)
        elif kind == "end":
            if run is not None:
                run.end(command["status"])
            reply(ended=command["status"])
            return
        else:
            try:
                if kind == "epoch":
                    run.log_epoch(command["record"])
                else:
                    model_file = Path(command["model_file"])
                    model, config = load_model(model_file)
                    version = run.finish(model, config, model_file, np.load(command["example_file"]),
                                         [Path(f) for f in command["files"]], command["metrics"])
                    reply(name=version.name, version=version.version)
            except BaseException as error:
                run.__exit__(type(error), error, error.__traceback__)  # FAILED; MLflow's error in one line
                raise
    if run is not None:
        import mlflow

        mlflow.set_tag(STATUS_REASON_TAG, GONE)
        run.end("KILLED")


def main(answer_fd: int, commands) -> int:
    def reply(**fields) -> None:
        try:
            os.write(answer_fd, (json.dumps(fields) + "\n").encode())
        except BrokenPipeError:  # the stage is gone: its commands end, and so does the run (`keep`)
            pass

    try:
        import regression.tracking.served  # noqa: F401  MLflow, while the stage reads its params and data
        keep(commands, reply)
    except PipelineError as error:
        reply(error=str(error))
        return 1
    except Exception as error:
        traceback.print_exc()
        reply(error=f"the tracking companion failed: {type(error).__name__}: {error}")
        return 1
    return 0
