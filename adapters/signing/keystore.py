"""The signing key store: P-256 keys on disk, DSSE envelopes out.

Layout of the key directory (mode 0700)::

    keys.json    {"active": keyid,
                  "keys": [{"keyid", "created_at", "public_key_pem"}, ...]}
    <keyid>.pem  PKCS8 private key, mode 0600, never logged or printed
    .lock        flock target serialising key creation and rotation

Signing uses ``cryptography`` (OpenSSL, constant time); verification lives in
``adapters.signing.dsse`` so auditors need only ``ecdsa``. Old keys are kept on
rotation so everything signed before keeps verifying against ``public_keys()``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.signing.dsse import build_envelope, key_id, pae

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["KeyInfo", "KeyStore"]

_MANIFEST = "keys.json"
_LOCK = ".lock"
_KEYID = re.compile(r"[0-9a-f]{64}")  # also keeps key ids from escaping the directory


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A published signing key (public half only)."""

    keyid: str
    created_at: datetime
    public_key_pem: str
    active: bool


@dataclass(frozen=True, slots=True)
class _Manifest:
    active: str
    keys: tuple[dict[str, str], ...]
    stamp: tuple[int, int, int]  # (inode, mtime_ns, size) of the keys.json read


class KeyStore:
    """Signing keys in one directory; safe to share between processes."""

    def __init__(self, directory: Path) -> None:
        """Bind to ``directory``; nothing touches the disk until first use."""
        self._dir = directory
        self._lock = threading.Lock()
        self._manifest: _Manifest | None = None
        self._private: dict[str, ec.EllipticCurvePrivateKey] = {}

    def __repr__(self) -> str:
        """Path only: the key material must never end up in logs."""
        return f"KeyStore({str(self._dir)!r})"

    def active(self) -> KeyInfo:
        """The key new envelopes are signed with (created on first use)."""
        manifest = self._current()
        return next(k for k in self._infos(manifest) if k.active)

    def active_key_id(self) -> str:
        """Key id of the active key."""
        return self._current().active

    def keys(self) -> list[KeyInfo]:
        """Every key, oldest first, the active one flagged."""
        return self._infos(self._current())

    def public_keys(self) -> dict[str, str]:
        """keyid -> PEM public key for every key: what auditors verify against."""
        return {k["keyid"]: k["public_key_pem"] for k in self._current().keys}

    def rotate(self) -> str:
        """Add a new key and make it active; old keys stay published.

        Returns:
            The new active key id.
        """
        with self._lock, self._exclusive():
            return self._add_key(self._read()).active

    def sign(self, payload_type: str, payload: bytes) -> dict[str, Any]:
        """DSSE envelope over ``payload`` signed by the active key."""
        return self._sign(self._current().active, payload_type, payload)

    def sign_with(
        self, keyid: str, payload_type: str, payload: bytes
    ) -> dict[str, Any]:
        """DSSE envelope over ``payload`` signed by a specific (listed) key.

        Raises:
            KeyError: ``keyid`` is not one of this store's keys.
        """
        if keyid not in {k["keyid"] for k in self._current().keys}:
            raise KeyError(f"no signing key {keyid!r} in {self._dir}")
        return self._sign(keyid, payload_type, payload)

    def _sign(self, keyid: str, payload_type: str, payload: bytes) -> dict[str, Any]:
        signature = self._private_key(keyid).sign(
            pae(payload_type, payload), ec.ECDSA(hashes.SHA256())
        )
        return build_envelope(payload_type, payload, [(keyid, signature)])

    # -- manifest -------------------------------------------------------------

    def _current(self) -> _Manifest:
        """The manifest; re-read only when keys.json changed (rotated elsewhere)."""
        with self._lock:
            manifest = self._read()
            if manifest is None:
                with self._exclusive():
                    # Another process may have won the race while we waited.
                    manifest = self._read() or self._add_key(None)
            self._manifest = manifest
            return manifest

    def _read(self) -> _Manifest | None:
        path = self._dir / _MANIFEST
        cached = self._manifest
        try:
            if cached is not None and cached.stamp == _stamp(path.stat()):
                return cached  # the per-sign fast path: one stat, no read
            handle = path.open(encoding="utf-8")
        except FileNotFoundError:
            return None
        with handle:
            # fstat the open file, so the stamp belongs to the content we read.
            stamp = _stamp(os.fstat(handle.fileno()))
            text = handle.read()
        try:
            raw = json.loads(text)
            keys = tuple(
                {f: str(k[f]) for f in ("keyid", "created_at", "public_key_pem")}
                for k in raw["keys"]
            )
            active = str(raw["active"])
        except (ValueError, KeyError, TypeError) as error:
            # Never paper over this with a fresh key: signatures would orphan.
            raise ValueError(f"{path} is corrupt: {error!r}") from error
        if active not in {k["keyid"] for k in keys}:
            raise ValueError(f"{path}: active key {active!r} is not listed")
        return _Manifest(active, keys, stamp)

    def _add_key(self, manifest: _Manifest | None) -> _Manifest:
        """Generate, persist and activate a key; caller holds the flock."""
        private = ec.generate_private_key(ec.SECP256R1())
        public_der = private.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        kid = key_id(public_der)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # O_EXCL + 0600 at creation: the file is never world-readable, not even
        # between create and chmod. Written before keys.json names it, so a
        # crash leaves at worst an unused key file, never a dangling key id.
        fd = os.open(
            self._dir / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        entry = {
            "keyid": kid,
            "created_at": datetime.now(UTC).isoformat(),
            "public_key_pem": private.public_key()
            .public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
            .decode("ascii"),
        }
        keys = [*(manifest.keys if manifest else ()), entry]
        self._write_manifest({"active": kid, "keys": keys})
        self._private[kid] = private
        fresh = self._read()
        assert fresh is not None  # we just wrote it
        return fresh

    def _write_manifest(self, document: dict[str, Any]) -> None:
        """Temp file + fsync + rename: readers see the old or the new, never half."""
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".keys.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(self._dir / _MANIFEST)  # os.replace: atomic
        except BaseException:
            Path(tmp).unlink()
            raise
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Cross-process lock (flock) around key creation and rotation."""
        self._dir.parent.mkdir(parents=True, exist_ok=True)
        with suppress(FileExistsError):
            self._dir.mkdir(mode=0o700)  # 0700 from birth; an existing dir is kept
        fd = os.open(self._dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _infos(self, manifest: _Manifest) -> list[KeyInfo]:
        return [
            KeyInfo(
                keyid=k["keyid"],
                created_at=datetime.fromisoformat(k["created_at"]),
                public_key_pem=k["public_key_pem"],
                active=k["keyid"] == manifest.active,
            )
            for k in manifest.keys
        ]

    # -- private keys ---------------------------------------------------------

    def _private_key(self, keyid: str) -> ec.EllipticCurvePrivateKey:
        """Load (once) and sanity-check a private key file.

        Raises:
            PermissionError: The file is accessible to group or others.
            ValueError: The file does not hold the P-256 key its name claims.
        """
        cached = self._private.get(keyid)
        if cached is not None:
            return cached
        if not _KEYID.fullmatch(keyid):
            raise ValueError(f"malformed key id {keyid!r}")
        path = self._dir / f"{keyid}.pem"
        # fstat the descriptor we read from, so the file checked is the file used.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode & 0o777
            if mode & 0o077:
                raise PermissionError(
                    f"refusing private key {path}: mode {mode:04o} lets group/others "
                    f"access it; run `chmod 600 {path}` if it was not exposed, "
                    "otherwise rotate the key"
                )
            data = handle.read()
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(
            private.curve, ec.SECP256R1
        ):
            raise ValueError(f"{path} is not an EC P-256 private key")  # noqa: TRY004
        public_der = private.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        if key_id(public_der) != keyid:
            raise ValueError(f"{path} holds a different key than its name says")
        self._private[keyid] = private
        return private


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    """Identity of one keys.json version: os.replace makes a new inode."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)
