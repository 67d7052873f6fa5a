"""healthgate-provision output: rich on a terminal, plain lines in logs, one JSON object (--json).

A command gets an `Output`, says what happens (`say`), wraps slow steps (`step`, `progress`),
shows summaries (`table`), records machine-readable results (`result`) and failures (`fail`),
and returns its exit code through `finish`. With `--json` nothing but one JSON object is
printed on stdout, with stable keys:

    {"command": "register", "ok": false, "exit_code": 1, "dry_run": false,
     "result": {...}, "error": {"code": "NETWORK_ERROR", "message": "..."}, "messages": [...]}
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from typing import TYPE_CHECKING, TextIO

from firmware.protocol.decoded import Decoded

if TYPE_CHECKING:
    from rich.console import Console

JSON_KEYS = ("command", "ok", "exit_code", "dry_run", "result", "error", "messages")
USAGE_ERROR = "USAGE"
INTERNAL_ERROR = "INTERNAL_ERROR"


def add_output_options(parser: argparse.ArgumentParser, dry_run: bool = True) -> None:
    """`--json` (and `--dry-run` for commands that write) on a subcommand's parser."""
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object (for scripts); exit code as usual")
    if dry_run:
        parser.add_argument("--dry-run", action="store_true",
                            help="do every check and say what would be done; write nothing")


class Output:
    """One command's output; `mode` is "rich" (a terminal), "plain" or "json"."""

    def __init__(self, command: str, mode: str, stream: TextIO, dry_run: bool = False,
                 error_stream: TextIO | None = None) -> None:
        self.command, self.mode, self.stream, self.dry_run = command, mode, stream, dry_run
        self.error_stream = error_stream or stream  # where "error: ..." goes without --json
        self.result: dict[str, Decoded] = {}
        self.error: dict[str, str] | None = None
        self.messages: list[str] = []
        self._console: Console | None = None
        if mode == "rich":
            from rich.console import Console  # only on a terminal: plain and JSON need no rich

            self._console = Console(file=stream, highlight=False)

    @classmethod
    def for_args(cls, command: str, args: argparse.Namespace, stream: TextIO | None = None,
                 error_stream: TextIO | None = None) -> "Output":
        stream = stream or sys.stdout
        if getattr(args, "json", False):
            mode = "json"
        else:
            mode = "rich" if stream.isatty() else "plain"
        return cls(command, mode, stream, dry_run=bool(getattr(args, "dry_run", False)),
                   error_stream=error_stream)

    def say(self, text: str) -> None:
        """A line for people (kept in "messages" with --json)."""
        if self.mode == "json":
            self.messages.append(text)
        elif self._console is not None:
            self._console.print(text, markup=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def would(self, text: str) -> None:
        """What a dry run would do."""
        self.say(f"would {text}")
        self.result.setdefault("would", []).append(text)

    def fail(self, exit_code: int, code: str, message: str) -> int:
        """Record the failure (a stable code and a message that says what to do); returns
        `exit_code` for the command to return."""
        self.error = {"code": code, "message": message}
        if self.mode != "json":
            print(f"error: {message}", file=self.error_stream, flush=True)
        return exit_code

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """A step that may take a while (network, key generation, a model): a spinner on a
        terminal, nothing elsewhere (the step's outcome is said afterwards)."""
        if self._console is None:
            yield
            return
        with self._console.status(label):
            yield

    @contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[str], None]]:
        """A bar over `total` parts; the caller calls `advance(description)` as each part
        starts (so the bar names the part that is running)."""
        if self._console is None:
            yield lambda description: None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=self._console,
                      transient=True) as bar:
            task = bar.add_task(label, total=total)
            started = [0]

            def advance(description: str) -> None:
                if started[0]:
                    bar.advance(task)
                started[0] += 1
                bar.update(task, description=f"{label}: {description}")
            yield advance

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """A summary table: boxed on a terminal, aligned columns in logs, nothing with --json
        (the same data is in "result")."""
        if self.mode == "json":
            return
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title, title_justify="left")
            for column in columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [max(len(columns[i]), *(len(r[i]) for r in rows)) if rows else len(columns[i])
                  for i in range(len(columns))]
        for row in [list(columns)] + [list(r) for r in rows]:
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
            print("  ".join(cells).rstrip(), file=self.stream)
        self.stream.flush()

    def fields(self, title: str, pairs: Sequence[tuple[str, str]]) -> None:
        """Named values (an identity, a summary): `name:  value` lines in logs, a two-column
        table on a terminal, nothing with --json (the same data is in "result")."""
        if self.mode == "json":
            return
        if self._console is not None:
            from rich.table import Table

            table = Table(title=title, title_justify="left", show_header=False)
            table.add_column(style="bold")
            table.add_column(overflow="fold")
            for name, value in pairs:
                table.add_row(name, value)
            self._console.print(table)
            return
        width = max(len(name) for name, _ in pairs) + 1
        for name, value in pairs:
            print(f"{name + ':':{width}}  {value}", file=self.stream)
        self.stream.flush()

    def finish(self, exit_code: int) -> int:
        """The command's end: with --json, print its one object. Returns `exit_code`."""
        if self.mode == "json":
            print(json.dumps(self.document(exit_code), sort_keys=False), file=self.stream,
                  flush=True)
        return exit_code

    def document(self, exit_code: int) -> dict[str, Decoded]:
        return {"command": self.command, "ok": exit_code == 0 and self.error is None,
                "exit_code": exit_code, "dry_run": self.dry_run, "result": self.result,
                "error": self.error, "messages": self.messages}


def json_usage_error(command: str, message: str, stream: TextIO | None = None) -> int:
    """An argument error in --json mode: one JSON object too, exit 2 as argparse would."""
    out = Output(command, "json", stream or sys.stdout)
    out.fail(2, USAGE_ERROR, message)
    return out.finish(2)


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """`parser.parse_args(argv)`, except that with --json a usage error is one JSON object on
    stdout (returned: the exit code 2) instead of argparse's text on stderr."""
    if "--json" not in argv:
        return parser.parse_args(argv)
    errors = io.StringIO()
    try:
        with redirect_stderr(errors):
            return parser.parse_args(argv)
    except SystemExit as stop:
        if stop.code in (0, None):  # --help: its text is the answer
            raise
        lines = errors.getvalue().strip().splitlines()
        command = next((a for a in argv if not a.startswith("-")), parser.prog)
        return json_usage_error(command, lines[-1] if lines else "bad arguments")


def run_handler(handler: Callable[[argparse.Namespace, Output], int], args: argparse.Namespace,
                out: Output) -> int:
    """Run a command. With --json an unexpected error is still one JSON object (exit 1), so
    a script never has to parse a traceback; elsewhere it propagates as usual."""
    if out.mode != "json":
        return handler(args, out)
    try:
        return handler(args, out)
    except Exception as exc:  # noqa: BLE001 - reported, with its type, in the one object
        return out.fail(1, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
