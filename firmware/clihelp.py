"""What the three commands share on the command line: --version, defaults shown, an example."""
from __future__ import annotations

import argparse

from firmware import __version__


def software_version() -> str:
    """The software's version: `firmware.__version__`, the one source (pyproject.toml reads it
    too), so the fleet, the boot events and `--version` cannot disagree."""
    return __version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description and example as written and shows every option's default (not
    for flags and options without one, nor where the help text states it already)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default:" in text or action.default in (None, False) or not action.option_strings:
            return text
        return super()._get_help_string(action)


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version",
                        version=f"{parser.prog} {software_version()}")


def example(*lines: str) -> str:
    """An epilog that ends `--help` with an example."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)
