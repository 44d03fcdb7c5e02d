"""Headless Chromium for end-to-end tests, driven over the DevTools protocol on a pipe.

Single-page apps (MLflow's UI) fill the page from the server after it has loaded, so a test
opens a page and waits until a JavaScript condition holds, then reads the page and takes a
screenshot: no fixed sleeps, and no packages beyond the standard library. Chromium reads
commands from its fd 3 and writes replies to its fd 4, as NUL-terminated JSON messages.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
# Puts the pipe ends given as arguments on fds 3 and 4, then becomes Chromium.
LAUNCH = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
          "os.execvp(sys.argv[3], sys.argv[3:])")


class BrowserError(RuntimeError):
    """Chromium ended or did not answer in time."""


class CommandError(BrowserError):
    """Chromium answered a command with an error."""


def find_chromium() -> str | None:
    """The path of an installed Chromium (or Chrome), None if there is none."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's path; without one a browser test is skipped, or fails when CI is set."""
    path = find_chromium()
    if path is None:
        message = "no Chromium to load pages in: apt-get install -y --no-install-recommends chromium"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and there is {message}")
        pytest.skip(message)
    return path


def above_stdio(fd: int) -> int:
    """`fd` moved to a number of 10 or more, so that putting it on Chromium's fd 3 or 4 cannot
    overwrite the other pipe end."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    """One headless Chromium with a fresh profile; each `open` is a new tab, `width` x `height`
    unless it says otherwise."""

    def __init__(self, executable: str, width: int = 1600, height: int = 1000):
        self.size = (width, height)
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        commands_read, commands_write = map(above_stdio, os.pipe())
        replies_read, replies_write = map(above_stdio, os.pipe())
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(commands_read), str(replies_write), executable,
             f"--user-data-dir={self.profile.name}", *FLAGS],
            pass_fds=(commands_read, replies_write), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(commands_read)
        os.close(replies_write)
        self.commands, self.replies = commands_write, replies_read
        self.buffer, self.next_id = b"", 0

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except BrowserError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.commands)
        os.close(self.replies)
        self.profile.cleanup()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self.commands, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"Chromium has ended (exit status {self.process.poll()})") from None
        deadline = time.monotonic() + timeout
        while True:
            for reply in self.read_messages(deadline, method):
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise CommandError(f"{method}: {reply['error'].get('message')}")
                    return reply.get("result", {})

    def read_messages(self, deadline: float, waiting_for: str) -> list[dict]:
        """The messages that have come in whole, waiting for some until `deadline`."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.replies], [], [], remaining)[0]:
            raise BrowserError(f"no answer from Chromium to {waiting_for}")
        chunk = os.read(self.replies, 1 << 20)
        if not chunk:
            raise BrowserError(f"Chromium ended while answering {waiting_for}")
        *complete, self.buffer = (self.buffer + chunk).split(b"\0")
        return [json.loads(message) for message in complete]

    def open(self, url: str, height: int | None = None, offline: bool = False) -> "Page":
        """A new tab at `url`, still loading (see Page.wait_for); `height` makes it taller, e.g.
        to take a long page in one screenshot; `offline`, with every network request failing, as
        on a machine without internet (files still load)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        width, default_height = self.size
        page.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height or default_height,
                                                         "deviceScaleFactor": 1, "mobile": False})
        if offline:
            page.send("Network.enable")
            page.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                           "downloadThroughput": -1, "uploadThroughput": -1})
        page.send("Page.navigate", {"url": url})
        return page


class Page:
    """A tab of a Browser."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CommandError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30, interval: float = 0.25) -> bool:
        """Whether the JavaScript `condition` became true within `timeout` seconds (while the page
        is still loading, a condition that throws, or cannot be evaluated yet, counts as false)."""
        deadline = time.monotonic() + timeout
        check = f"(() => {{ try {{ return Boolean({condition}); }} catch {{ return false; }} }})()"
        while True:
            try:
                if self.evaluate(check):
                    return True
            except CommandError:  # e.g. no page context yet while the first navigation commits
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
