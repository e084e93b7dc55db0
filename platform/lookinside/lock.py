"""One driver per sweep: a lock file in the sweep folder, with a heartbeat.

`run` and `resume` take the lock before Ray Tune starts and drop it at the end. A second
driver of the same sweep gets one line and exit 2. A lock is stale, and taken over, once
its holder is gone: its process has ended (same host), or its heartbeat, written every
HEARTBEAT seconds, is older than STALE seconds (any host, any store)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone

from lookinside.errors import UserError
from lookinside.results import ResultsError, Store

LOCK = "driver.lock.json"
HEARTBEAT = 10.0
STALE = 60.0


class SweepLocked(UserError):
    """Another driver runs this sweep."""


class SweepLock:
    def __init__(self, store: Store, study: str, sweep_id: str):
        self.store = store
        self.path = f"{store.sweep_dir(study, sweep_id)}/{LOCK}"
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def holder(self) -> dict | None:
        """The live holder's lock document, or None if there is none or it is stale."""
        if not self.store.exists(self.path):
            return None
        try:
            held = self.store.read_json(self.path)
        except ResultsError:
            return None          # half-written: its writer re-reads and settles it
        if held.get("host") == socket.gethostname() and not _alive(held.get("pid", -1)):
            return None
        if time.time() - held.get("heartbeat", 0) > STALE:
            return None
        return held

    def acquire(self) -> None:
        held = self.holder()
        if held is None:
            self._write()
            time.sleep(0.2)      # two drivers that wrote at once: the later write wins, the other backs off
            held = self.store.read_json(self.path)
            if held.get("token") == self.token:
                self._thread = threading.Thread(target=self._beat, daemon=True)
                self._thread.start()
                return
        since = datetime.fromtimestamp(held["started"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise SweepLocked(f"this sweep is being run by process {held['pid']} on {held['host']} since {since}; "
                          f"wait for it to end (or, if it is gone, remove {self.path})")

    def _write(self, started: float | None = None) -> None:
        self.started = started or time.time()
        self.store.write_json(self.path, {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                                          "started": self.started, "heartbeat": time.time()})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            self._write(self.started)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            try:
                if self.store.read_json(self.path).get("token") == self.token:
                    self.store.fs.delete_file(self.path)
            except (ResultsError, OSError):
                pass

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(store: Store, study: str, sweep_id: str) -> dict | None:
    """The lock document of a driver running this sweep now, if one is."""
    return SweepLock(store, study, sweep_id).holder()
