"""Optional API keys: stored as SHA-256 digests, compared in constant time, never logged."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from megasense.errors import ConfigError
from megasense.service.settings import ServiceSettings


def hash_key(key: str) -> str:
    """The digest a keys file holds for ``key`` (what ``megasense serve --hash-key`` prints)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _read_keys_file(path: Path) -> list[str]:
    digests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        digest = line.removeprefix("sha256:").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(
                f"{path}, line {number}: expected a SHA-256 hex digest (64 hex characters), "
                "not a plain key; make one with `megasense serve --hash-key KEY`"
            )
        digests.append(digest)
    return digests


class KeyChecker:
    """``check(presented)`` is True when no keys are configured, or when the key is one of them."""

    def __init__(self, settings: ServiceSettings) -> None:
        digests: list[str] = []
        if settings.api_keys_file is not None:
            digests += _read_keys_file(settings.api_keys_file)
        if settings.api_keys:
            digests += [hash_key(k.strip()) for k in settings.api_keys.split(",") if k.strip()]
        self._digests = [bytes.fromhex(d) for d in digests]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, presented: str | None) -> bool:
        if not self.enabled:
            return True
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        # Compare against every stored digest (no early exit), each in constant time.
        found = False
        for stored in self._digests:
            found |= hmac.compare_digest(digest, stored)
        return found
