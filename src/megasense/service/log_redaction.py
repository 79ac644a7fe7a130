"""Private data out of the service's logs (``redact_logs``, on by default).

The service never logs a request's texts on purpose, but they reach the logs anyway: a traceback of an
unexpected error (``log.exception``) carries the exception's message, which may quote the text it failed
on, and the access log carries each URL with its query string. A ``logging.Filter`` on the loggers that
write those records replaces e-mail addresses, phone numbers, cards, IDs, IPs and URLs in the formatted
message and in the traceback before any handler sees them.
"""

from __future__ import annotations

import logging
import traceback

from megasense.privacy import Redactor

LOGGERS = ("megasense.service", "uvicorn.error", "uvicorn.access")
"""The loggers that carry request data: megasense's own (errors with tracebacks) and uvicorn's (server errors,
access lines)."""


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and its traceback) through a ``Redactor``; never drops a record."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = self.redactor.redact(message), None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # the formatter prints exc_text when it is set: the traceback, redacted, instead of the raw one
            record.exc_text = self.redactor.redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
        elif record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


def install_log_redaction(enabled: bool, loggers: tuple[str, ...] = LOGGERS) -> RedactingFilter | None:
    """Put one ``RedactingFilter`` on each of ``loggers`` (replacing one an earlier app put there), or take them
    off when not ``enabled``; returns the filter installed."""
    installed = RedactingFilter() if enabled else None
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RedactingFilter)]:
            logger.removeFilter(old)
        if installed is not None:
            logger.addFilter(installed)
    return installed
