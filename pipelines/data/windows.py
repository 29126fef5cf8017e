"""Time-window splits in whole UTC days (``data.split.method`` ``days`` and ``dates``).

``days``: the last ``eval_days`` + ``test_days`` calendar days (UTC) of the
data are held out, the latest ``test_days`` of them as test. Day ``D`` of a
timestamp ``t`` (epoch seconds) is ``floor(t / 86400)``; with ``L`` the day of
the newest interaction, a row is test when ``D > L - test_days`` and held out
when ``D > L - test_days - eval_days``. So ``eval_days: 7`` on data ending
2024-03-31 23:59:59 holds out 2024-03-25 00:00:00 onwards, and 2024-03-24
23:59:59 is train.

``dates``: rows at or after ``eval_from`` 00:00:00 UTC are held out, those at
or after ``test_from`` 00:00:00 UTC are test.
"""
from __future__ import annotations

import calendar
import datetime
import re
from typing import List

DAY = 86_400


def day_start(text: str) -> float:
    """Epoch seconds of a ``YYYY-MM-DD`` day's 00:00 UTC; ValueError if not such a date."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError(f"{text!r} is not a date written YYYY-MM-DD")
    day = datetime.date.fromisoformat(text)
    return float(calendar.timegm(day.timetuple()))


def split_window_problems(s) -> List[tuple]:
    """``(key, message)`` for the time-window split settings (methods days and dates)."""
    out = []
    if s.method in ("days", "dates") and s.test_fraction > 0:
        out.append(("test_fraction", f"method {s.method!r} takes its test split from "
                    + ("test_days" if s.method == "days" else "test_from")))
    if s.method == "days":
        if not 1 <= s.eval_days <= 3650:
            out.append(("eval_days", f"must be in 1..3650, got {s.eval_days}"))
        if not 0 <= s.test_days <= 3650:
            out.append(("test_days", f"must be in 0..3650, got {s.test_days}"))
    if s.method != "dates":
        return out
    if s.eval_from is None:
        out.append(("eval_from", "method 'dates' needs the first eval day, e.g. 2024-03-01"))
    starts = {}
    for key in ("eval_from", "test_from"):
        if getattr(s, key) is not None:
            try:
                starts[key] = day_start(getattr(s, key))
            except ValueError as exc:
                out.append((key, str(exc)))
    if len(starts) == 2 and starts["test_from"] <= starts["eval_from"]:
        out.append(("test_from", f"must be after eval_from ({s.eval_from})"))
    return out
