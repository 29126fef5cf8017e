"""Live progress on a terminal (tqdm): an elapsed-time ticker on the running component's line,
the Trainer's step bar per epoch (steps/s, ETA). Only where the console's stream is a TTY
in the normal mode; nothing of it reaches the run's log (:mod:`pipelines.terminal.console`).

The Trainer reports steps on ``STEPS_LOGGER`` (trainer/monitoring.py ``StepProgress``), a
logger that only the console listens to while a run lasts, so nothing is logged per step
anywhere else.
"""
from __future__ import annotations

import logging
import os
import threading

from tqdm import tqdm

STEPS_LOGGER = "twotower.progress.steps"  # records with a ``step`` attribute: see below


def width(stream) -> dict:
    """tqdm's width options: follow the terminal's width, or 100 columns where the terminal
    reports none (a pseudo-terminal of 0 x 0, as `script` or a CI runner makes)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        columns = 0
    return {"dynamic_ncols": True} if columns else {"ncols": 100}


class Ticker:
    """``[4/7] Transform ... 00:12``, redrawn every ``every`` seconds until :meth:`close`."""

    def __init__(self, stream, text: str, every: float = 1.0):
        self.text = text
        self.bar = tqdm(total=None, desc=text, bar_format="{desc} {elapsed}", file=stream,
                        leave=False, **width(stream))
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, args=(every,), daemon=True)
        self.thread.start()

    def _tick(self, every: float) -> None:
        while not self.done.wait(every):
            self.bar.refresh()

    def close(self) -> None:
        """Stops the ticker and clears its line (the caller writes the line again)."""
        self.done.set()
        self.thread.join(timeout=5)
        self.bar.close()


class StepBar:
    """``    epoch 2/6  40%|████      | 88/220 [00:05<00:07, 17.1 step/s]`` for one epoch."""

    def __init__(self, stream, epoch: int, epochs, steps):
        self.epoch = epoch
        desc = f"    epoch {epoch}" + (f"/{epochs}" if epochs else "")
        self.bar = tqdm(total=steps or None, desc=desc, unit="step", file=stream, leave=False,
                        mininterval=0.25, **width(stream))

    def step(self, record) -> bool:
        """Moves to the record's step; False when the record is another epoch's."""
        epoch, _, step, _ = record.step
        if epoch != self.epoch:
            return False
        self.bar.update(step - self.bar.n)
        return True

    def close(self) -> None:
        self.bar.close()


class StepHandler(logging.Handler):
    """Feeds the Trainer's step records to a console's live line."""

    def __init__(self, console):
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if hasattr(record, "step"):
                self.console.show_step(record)
        except Exception:  # progress must never break the run
            pass
