"""A one-line live display of a sweep: done / running / failed of total, elapsed, ETA, and
the live metrics trials report (`session.report`), averaged over the trials running."""

from __future__ import annotations

import sys
import time

from ray import tune

# The key of a Tune result under which a trial's live metrics travel.
LIVE = "live"
# A live metric in [0, 1]: the share of its work a running trial has done (the ETA uses it).
PROGRESS = "progress"


class Progress(tune.Callback):
    """Counts trials (pack members), not Tune trials, so packing does not change the numbers.

    Kept free of open streams and clocks between runs so that Tune can pickle it with the
    experiment and bring it back on `resume`."""

    def __init__(self, study: str, total: int, pack_sizes: list[int], enabled: bool = True,
                 every: float = 1.0):
        self.study, self.total, self.pack_sizes = study, total, pack_sizes
        self.enabled, self.every = enabled, every
        self._start = self._last = 0.0
        self._status = ""
        self._live: dict[str, dict[str, float]] = {}     # Tune trial id -> its latest live metrics

    def setup(self, **info) -> None:
        self._start = time.monotonic()
        self._last = 0.0

    def counts(self, trials) -> tuple[int, int, int]:
        done = running = failed = 0
        for trial in trials:
            n = self.pack_sizes[trial.config["pack"]]
            if trial.status == "TERMINATED":
                done += n
            elif trial.status == "RUNNING":
                running += n
            elif trial.status == "ERROR":
                failed += n
        return done, running, failed

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if isinstance(result.get(LIVE), dict):
            self._live[trial.trial_id] = result[LIVE]

    def live(self, trials) -> str:
        """The live metrics of the running trials (of all that reported, if none runs), averaged."""
        running = [t.trial_id for t in trials if t.status == "RUNNING" and t.trial_id in self._live]
        chosen = [self._live[t] for t in running] or list(self._live.values())
        names = [k for k in dict.fromkeys(k for m in chosen for k in m) if k != PROGRESS]
        if not names:
            return ""
        means = {k: sum(m[k] for m in chosen if k in m) / sum(k in m for m in chosen) for k in names}
        return " | " + ", ".join(f"{k} {_number(v)}" for k, v in means.items())

    def work_done(self, trials) -> float:
        """Trials' worth of work done: finished members, and running members' reported share."""
        work = 0.0
        for trial in trials:
            n = self.pack_sizes[trial.config["pack"]]
            if trial.status in ("TERMINATED", "ERROR"):
                work += n
            elif trial.status == "RUNNING":
                work += n * min(1.0, max(0.0, self._live.get(trial.trial_id, {}).get(PROGRESS, 0.0)))
        return work

    def on_step_end(self, iteration, trials, **info) -> None:
        self._show(trials, force=False)

    def on_experiment_end(self, trials, **info) -> None:
        self._show(trials, force=True)

    def _show(self, trials, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        self._start = self._start or now
        tty = sys.stderr.isatty()
        done, running, failed = self.counts(trials)
        status = f"[{self.study}] {done}/{self.total} done, {running} running, {failed} failed"
        # A terminal gets a line redrawn each second; a log gets a line when counts change
        # (or every 30 s), so that CI logs stay short.
        if not force and (now - self._last < self.every if tty else
                          status == self._status and now - self._last < 30.0):
            return
        self._last, self._status = now, status
        elapsed = now - self._start
        work = self.work_done(trials)
        eta = _clock(elapsed / work * (self.total - work)) if work > 0 else "--:--"
        line = f"{status} | elapsed {_clock(elapsed)} | ETA {eta}{self.live(trials)}"
        sys.stderr.write("\r" + line.ljust(90) if tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and sys.stderr.isatty() and self._status:
            sys.stderr.write("\n")


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
