"""A real ``qroute serve`` process over a data dir, to kill with SIGKILL.

``ServerProcess(data_dir).start()`` runs ``python -m qroute serve`` (the
qroute this process imports, with the admin key in QROUTE_ADMIN_KEY) on a
free port and returns once it accepts calls; ``kill()`` sends SIGKILL,
``stop()`` SIGTERM (graceful). Its log goes to ``data_dir/../server-N.log``.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import qroute
from qroute.keys import new_key

START_TIMEOUT = 20.0


def child_env(admin_key: str) -> dict[str, str]:
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(qroute.__file__))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    env["QROUTE_ADMIN_KEY"] = admin_key
    return env


class ServerProcess:
    def __init__(self, data_dir: Path, *options: str) -> None:
        self.data_dir = data_dir
        self.options = options
        self.admin_key = new_key("admin")[1]
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> int:
        """Start the server; returns its port once it serves."""
        self.starts += 1
        log = open(self.data_dir.parent / f"server-{self.starts}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qroute", "serve", "--data-dir", str(self.data_dir),
             "--listen", "127.0.0.1:0", "--log-level", "warning", *self.options],
            env=child_env(self.admin_key), stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                if line.startswith("qroute serving on "):
                    self.port = int(line.split()[3].rsplit(":", 1)[1].rstrip(","))
                    return self.port
        self.kill()
        raise AssertionError(f"the server did not start; see {self.data_dir.parent}/server-{self.starts}.log")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """SIGTERM: a graceful stop."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=30)
            self.process.stdout.close()
            self.process = None
