"""The driver's live progress line and final summary.

Rank 0 puts one row per log interval on a `ray.util.queue.Queue` owned by the driver; a daemon
thread on the driver prints each as one line (with `in_place`, in a terminal: the same line,
rewritten, so that a long run fills one line of the screen, not hundreds; in a log or a pipe, at
most `LOG_LINES` lines a run, evenly spaced in kimg). (Ray Train V2 runs its
controller, and any UserCallback, in an actor, so a callback's prints would not be the driver's
own.) The queue outlives worker restarts, so the line continues across a resume.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable

from ray.util.queue import Empty, Queue

LOG_LINES = 10  # progress lines of a whole run written to a log or pipe (every row goes to MLflow)


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):  # NaN or no rate yet
        return "--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_row(row: dict, total_kimg: float) -> str:
    """One progress line: kimg, images per second, losses, ETA."""
    rate = row.get("img_per_s", 0.0)
    eta = (total_kimg - row["kimg"]) * 1000 / rate if rate > 0 else float("inf")
    text = (
        f"kimg {row['kimg']:8.3f}/{total_kimg:g}  {rate:8.1f} img/s  "
        f"L_F {row['loss/fake']:.4g}  L_G {row['loss/generator']:.4g}  ETA {format_eta(eta)}"
    )
    if "loss/discriminator" in row:  # data-aided runs: F's BCE (ln 2 = chance) and G's L_GAN
        text += f"  L_D {row['loss/discriminator']:.4g}  L_GAN {row['loss/generator_gan']:.4g}"
    if "gpu_mem_peak_gb" in row:
        text += f"  peak {row['gpu_mem_peak_gb']:.1f} GiB"
    if row.get("nan_dropped_samples"):
        text += f"  dropped {int(row['nan_dropped_samples'])}"
    if row.get("resumed_from_kimg") is not None:
        text += f"  (resumed from kimg {row['resumed_from_kimg']:.3f})"
    return text


class LogCadence:
    """Which rows a log or a pipe shows: at most `lines` a run, evenly spaced in kimg, and every
    resumed row (a resume is news); the first row is always shown."""

    def __init__(self, total_kimg: float, lines: int = LOG_LINES):
        self.step = total_kimg / lines
        self.next_kimg = 0.0

    def shows(self, row: dict) -> bool:
        if row["kimg"] < self.next_kimg and row.get("resumed_from_kimg") is None:
            return False
        self.next_kimg = row["kimg"] + self.step
        return True


class ProgressPrinter:
    """Collects rank 0's rows on the driver and prints them as they arrive."""

    def __init__(
        self,
        total_kimg: float,
        write: Callable[[str], None] | None = None,
        show_lines: bool = True,
        in_place: bool = False,
    ):
        self.total_kimg = total_kimg
        self.show_lines = show_lines
        self.queue = Queue(maxsize=10_000)
        self.rows: list[dict] = []
        self._write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        # a terminal shows one line, rewritten per row; logs and pipes keep one line per row
        self._in_place = in_place and write is None and sys.stderr.isatty()
        self._line_open = False
        self._cadence = LogCadence(total_kimg)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sid-progress", daemon=True)
        self._started = time.time()

    def start(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def _drain(self, timeout: float) -> None:
        try:
            row = self.queue.get(timeout=timeout)
        except Empty:
            return
        if "message" in row:  # a worker's one-off line (how the networks run), not a metric row
            if self._line_open:
                sys.stderr.write("\n")
                self._line_open = False
            self._write(row["message"])
            return
        self.rows.append(row)
        if self.show_lines:
            self._show(row)

    def _show(self, row: dict) -> None:
        text = format_row(row, self.total_kimg)
        if not self._in_place:
            if self._cadence.shows(row):
                self._write(text)
            return
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be rewritten
        sys.stderr.write(f"\r{text[:width]}\x1b[K")
        sys.stderr.flush()
        self._line_open = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._drain(timeout=0.5)

    def stop(self) -> list[dict]:
        """Stop the thread after printing what is left; returns every row received."""
        self._stop.set()
        self._thread.join(timeout=5)
        while not self.queue.empty():
            self._drain(timeout=0.1)
        self.queue.shutdown()
        if self._line_open:  # the last row stays on screen; what follows starts below it
            sys.stderr.write("\n")
            self._line_open = False
        return self.rows

    def summary(self, outcome: str, extra: dict | None = None) -> str:
        elapsed = time.time() - self._started
        last = self.rows[-1] if self.rows else {}
        resumes = sum(1 for r in self.rows if r.get("resumed_from_kimg") is not None)
        parts = [
            f"run {outcome}: kimg {last.get('kimg', 0.0):.3f}/{self.total_kimg:g} in {format_eta(elapsed)}",
            f"L_F {last.get('loss/fake', float('nan')):.4g}  L_G {last.get('loss/generator', float('nan')):.4g}",
            f"resumes {resumes}",
        ]
        for key, value in (extra or {}).items():
            parts.append(f"{key}: {value}")
        text = "\n  ".join(parts)
        self._write(text)
        return text
