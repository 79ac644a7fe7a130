"""The command line as the user typed it, kept for what records it (the "Reproduce" section of a model card).

Click parses the arguments away before a command runs; the ``megasense`` group keeps a copy in the
context's ``meta`` (shared by every subcommand's context), whether the arguments came from
``sys.argv``, from ``main(argv)`` or from a test's ``CliRunner``.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer
from typer.core import TyperGroup

ARGV = "megasense.argv"
"""The ``ctx.meta`` key of the arguments after ``megasense``."""


class RecordingGroup(TyperGroup):
    """Typer's group that keeps the arguments it was given in ``ctx.meta[ARGV]``."""

    def make_context(self, info_name: str | None, args: list[str], parent=None, **extra: Any):
        typed = list(args)  # parsing consumes the list
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta[ARGV] = typed
        return ctx


def command_line(ctx: typer.Context) -> str:
    """``megasense ARGS...`` as typed (shell-quoted); ``sys.argv`` when the group did not record them."""
    typed = ctx.meta.get(ARGV)
    return shlex.join(["megasense", *(typed if typed is not None else sys.argv[1:])])
