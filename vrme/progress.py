"""One terminal progress bar for the library's long loops (synthesis, features, training).

The bar is drawn with :mod:`rich` only when ``enabled``; otherwise every method does nothing,
so callers never branch on it. Orchestrated runs report progress through Prefect instead
(``flows/progress.py``); this is the bar a library call or a stage command shows.
"""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    """A bar over ``total`` units (frames, epochs) labelled ``label``.

    ``unit`` is printed after the count ("120/480 frames"); ``rate`` adds units per second;
    ``note`` is free text shown beside the count (e.g. "2/8 videos") and is changed with
    :meth:`advance` or :meth:`note`. ``transient`` removes the bar when it closes. Use as a
    context manager (or :meth:`start`/:meth:`close`).
    """

    def __init__(self, enabled: bool, label: str, total: int, *, unit: str = "",
                 rate: bool = False, note: str = "", transient: bool = False) -> None:
        self.enabled = bool(enabled)
        self.label, self.total, self.unit, self.rate = label, max(1, int(total)), unit, rate
        self.transient = transient
        self._note = note
        self._bar: Any = None
        self._task: Any = None
        self._t0 = 0.0

    def start(self) -> ProgressBar:
        if not self.enabled or self._bar is not None:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn(),
                              TextColumn("{task.fields[note]}"), MofNCompleteColumn()]
        if self.unit:
            columns.append(TextColumn(self.unit))
        if self.rate:
            columns.append(TextColumn("{task.fields[rate]}"))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        self._bar = Progress(*columns, transient=self.transient)
        self._bar.start()
        self._t0 = time.perf_counter()
        self._task = self._bar.add_task(self.label, total=self.total, note=self._note, rate="")
        return self

    def advance(self, n: int = 1, *, description: str | None = None,
                note: str | None = None) -> None:
        """Count ``n`` more units; optionally change the label or the note."""
        if self._bar is None:
            return
        fields: dict[str, Any] = {}
        if description is not None:
            fields["description"] = description
        if note is not None:
            fields["note"] = note
        if self.rate:
            done = self._bar.tasks[0].completed + n
            per_s = done / max(1e-9, time.perf_counter() - self._t0)
            fields["rate"] = f"{per_s:,.0f} {self.unit or 'units'}/s"
        self._bar.update(self._task, advance=n, **fields)

    def note(self, text: str) -> None:
        """Change the note beside the count (e.g. videos done)."""
        self.advance(0, note=text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
