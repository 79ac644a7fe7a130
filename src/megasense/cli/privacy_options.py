"""``--redact`` and ``--redact-names FILE``, shared by ``megasense predict`` and ``megasense analyze``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RedactOpt = Annotated[
    bool,
    typer.Option(
        "--redact",
        help="Replace e-mail addresses, phone numbers, URLs, card numbers (Luhn-checked), Chinese resident IDs, "
        "IP addresses (and --redact-names) in the text by [EMAIL], [PHONE], [URL], [CARD], [ID], [IP], [NAME] "
        "before anything is scored, stored or shown.",
    ),
]
RedactNamesOpt = Annotated[
    Path | None,
    typer.Option(
        "--redact-names",
        help="A UTF-8 file of names to redact as [NAME], one a line (# comments); implies --redact. Case-insensitive; "
        "Latin names as whole words, Chinese names anywhere.",
    ),
]


def redactor_from(redact: bool, names: Path | None):
    """The ``privacy.Redactor`` the flags ask for, or None."""
    from megasense.privacy import build_redactor

    return build_redactor(redact, names_file=names)
