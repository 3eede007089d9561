"""A headless Chromium driven over the DevTools protocol on a pipe (no websocket, no extra package).

Used by ``tests/test_html_browser.py`` and ``docs/make_html_screenshot.py``: open a
file, record console errors, uncaught exceptions, log errors (CSP violations land
there) and every network request, evaluate JavaScript, take a screenshot.

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and
write them to fd 4, each a JSON text ended by a NUL byte.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, binary: str, *, width: int = 1100, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="deadrelu-chromium-")
        cmd_r, cmd_w = os.pipe()
        evt_r, evt_w = os.pipe()
        # move the child's ends above 4 so that dup2 onto 3 and 4 cannot clobber them
        child_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(evt_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(evt_w)

        def setup() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=setup, pass_fds=(3, 4, child_r, child_w),
        )
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(evt_r, "rb", buffering=0)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self.session = ""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=None)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=None)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self._record(msg)
                    self._events.put(msg)

    def _record(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console_errors.append("exception: " + str(
                details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console_errors.append("console.error: " + " ".join(
                str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.console_errors.append("log: " + str(params["entry"].get("text")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(str(params.get("request", {}).get("url")))

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None | bool = True, timeout: float = 60) -> dict[str, Any]:
        """Send one command (to the page session unless ``session=None``) and wait for its reply."""
        self._next += 1
        ident = self._next
        msg: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is True:
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no reply from Chromium to {method}")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, path: Path, *, settle: float = 0.5, timeout: float = 60) -> None:
        """Navigate to the file and wait for its load event (and ``settle`` seconds more)."""
        self.send("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{path} did not finish loading")
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if event.get("method") == "Page.loadEventFired":
                break
        time.sleep(settle)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_height: int | None = None) -> Path:
        """Save a PNG of the page; ``full_height`` px of it when given, else the viewport."""
        params: dict[str, Any] = {"format": "png"}
        if full_height:
            width = self.evaluate("document.documentElement.scrollWidth")
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": full_height, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, OSError):
            self.send("Browser.close", session=None, timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self._out, self._in):
            with contextlib.suppress(OSError):
                f.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Opens every layer, then lists every chart with its size and how much of it is drawn.
MEASURE_CHARTS = """
(() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const out = [];
  for (const el of document.querySelectorAll('svg.chart, canvas.units')) {
    const r = el.getBoundingClientRect();
    let drawn;
    if (el.tagName === 'CANVAS') {
      const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
      drawn = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]) drawn++;
    } else {
      drawn = el.querySelectorAll('rect, path, circle').length;
    }
    out.push({tag: el.tagName.toLowerCase(), cls: el.getAttribute('class'), width: r.width,
              height: r.height, drawn: drawn,
              label: el.getAttribute('aria-label') || (el.querySelector('desc') || {}).textContent || ''});
  }
  return out;
})()
"""
