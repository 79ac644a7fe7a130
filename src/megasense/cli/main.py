"""The ``megasense`` command: a table of subcommand -> function, each defined in its own module.

Every subcommand runs inside ``cli.errors.user_errors``: megasense's own errors (bad input, missing
files, missing models) print as one line ``error: ...`` and exit 2; anything else is a bug in megasense
and prints its traceback with a request to report it, exit 1.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.markup import escape
from typer.core import TyperCommand

from megasense.cli.command_line import RecordingGroup
from megasense.cli.errors import user_errors

app = typer.Typer(
    name="megasense",
    help="Megatron-style language models for the text people write: sentiment, topics, generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=RecordingGroup,  # keeps the command line as typed, for `megasense train`'s model card
)


@app.callback()
def _root() -> None:
    """Megatron-style language models for the text people write: sentiment, topics, generation."""


# name -> "module:function". Modules are imported lazily so `megasense --help` stays fast.
COMMANDS: dict[str, str] = {
    "predict": "sentiment:predict",
    "evaluate": "sentiment:evaluate",
    "explain": "explain:explain",
    "train": "sentiment:train",
    "embed": "embed:embed",
    "segment": "segment:segment",
    "analyze": "analyze:analyze",
    "market": "market:market",
    "dashboard": "dashboard:dashboard",
    "generate": "generate:generate",
    "assist": "assist:assist",
    "chat": "assist:chat",
    "summarize": "summarize:summarize",
    "serve": "serve:serve",
    "tokenize": "tokenize:tokenize",
    "pretrain": "pretrain:pretrain",
    "train-tokenizer": "tokenize:train_tokenizer",
    "models": "models:models",
    "download": "models:download",
    "convert": "models:convert",
    "export": "models:export",
    "version": "info:version",
}


class LiteralHelpCommand(TyperCommand):
    """A command whose help prints as written: rich markup would take ``[default: 8000]`` or
    ``megasense[onnx]`` in a help text for a tag and drop it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = escape(self.help) if self.help else self.help
        for param in self.params:
            if getattr(param, "help", None):
                param.help = escape(param.help)


def _register() -> None:
    for name, target in COMMANDS.items():
        module_name, func_name = target.split(":")
        module = importlib.import_module(f"megasense.cli.{module_name}")
        # every command ends alike: the user's mistakes in one line (exit 2), a bug with its traceback (exit 1),
        # including what a command does outside its own `with user_errors()`
        app.command(name, cls=LiteralHelpCommand)(user_errors()(getattr(module, func_name)))


def main(argv: list[str] | None = None) -> None:
    _register()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="megasense")


if __name__ == "__main__":
    main()
