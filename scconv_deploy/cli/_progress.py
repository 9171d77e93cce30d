"""Stage progress on stderr with rich: a bar while a stage with countable work runs, then one line
with its time. Shown on a terminal only — not under ``-q`` or ``--json``, and not when stderr is a
pipe or a log file, where an error must stay the one line it is (stage times are in the report)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


class StageProgress:
    """A ``stages.StageListener`` drawing on stderr; use as a context manager around the command."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, int] = {}

    @classmethod
    def for_terminal(cls, quiet: bool, json_output: bool) -> StageProgress | None:
        """A progress display when stderr is a terminal and output is for people; else None."""
        console = Console(stderr=True)
        return cls(console) if console.is_terminal and not (quiet or json_output) else None

    def __enter__(self) -> StageProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start(self, name: str, total: int | None) -> None:
        self._tasks[name] = self._progress.add_task(name, total=total)

    def advance(self, name: str, done: int) -> None:
        task = self._tasks.get(name)
        if task is not None:
            self._progress.advance(task, done)

    def end(self, name: str, seconds: float, ok: bool) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            self._progress.remove_task(task)
        mark = "[green]✓[/green]" if ok else "[red]✗[/red]"
        self._progress.console.print(f"{mark} {name} [dim]{seconds:.1f} s[/dim]", highlight=False)
