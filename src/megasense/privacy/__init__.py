"""Private data out of texts before anything is stored or shown: e-mail addresses, phone numbers, URLs, payment
cards, Chinese resident IDs, IP addresses and listed names, replaced by typed placeholders (``[EMAIL]``).

No torch and nothing of megasense above ``errors``: the CLI, ``analyze`` and the service's logs all use it.
"""

from megasense.privacy.detectors import Detector, NameDetector, Span, default_detectors
from megasense.privacy.redactor import KINDS, Redactor, build_redactor, read_names, resolve

__all__ = [
    "KINDS",
    "Detector",
    "NameDetector",
    "Redactor",
    "Span",
    "build_redactor",
    "default_detectors",
    "read_names",
    "resolve",
]
