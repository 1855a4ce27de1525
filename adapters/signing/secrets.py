"""Secrets kept in the var directory, generated once (mode 0600)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def secret_file(path: Path, *, nbytes: int = 32) -> bytes:
    """The secret stored at ``path``, created (0600, race-safe) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write a complete file under a private name, then link it into place:
        # a reader never sees it half-written, and of two racing processes
        # exactly one link wins.
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(nbytes))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return bytes.fromhex(path.read_text().strip())


class FileSecrets:
    """Per-tenant tokenization keys derived from one master secret."""

    def __init__(self, master_path: Path) -> None:
        self._master_path = master_path
        self._master: bytes | None = None

    def tokenization_key(self, tenant: str) -> bytes:
        if self._master is None:
            self._master = secret_file(self._master_path)
        return hmac.new(
            self._master, b"tokenize:" + tenant.encode(), hashlib.sha256
        ).digest()
