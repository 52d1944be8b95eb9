"""The server's VAPID key pair (RFC 8292): it signs every push so that push services know the
pushes come from the server the browser subscribed with (the browser was given the public key
as ``applicationServerKey``).

Where the private key comes from, first match wins:

``STARRY_VAPID_PRIVATE_KEY``
    the key itself (PEM, or the raw 32-byte scalar base64url-encoded) — for several hosts
    sharing one store, given by the orchestrator's secret store;
``STARRY_VAPID_KEY_FILE``
    a PEM file (mode 0600; refused when others may read it); created on first start when
    it does not exist;
otherwise
    ``<store>.vapid.pem`` next to a SQLite store, :data:`DEFAULT_KEY_FILE` with a
    PostgreSQL one; created on first start (mode 0600).

Several hosts (or a replaced host) must use **the same key**: a subscription is bound to the
public key it was made with, and a push signed with another key is refused by the push
service (the app then subscribes again).
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

KEY_ENV = "STARRY_VAPID_PRIVATE_KEY"
KEY_FILE_ENV = "STARRY_VAPID_KEY_FILE"
SUBJECT_ENV = "STARRY_VAPID_SUBJECT"
#: where the key is kept unless told otherwise (next to the default store)
DEFAULT_KEY_FILE = "reports/vapid_private_key.pem"
#: the contact push services see in each JWT (``sub``); set your own
DEFAULT_SUBJECT = "mailto:starry-guide@example.org"
#: a signed JWT is reused this long per push service (RFC 8292 allows up to 24 h)
TOKEN_SECONDS = 12 * 3600


class VapidKeyError(ValueError):
    """The configured VAPID key is unusable (the message says why and what to do)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _create(path: Path) -> None:
    """Write a new key to ``path`` (mode 0600) unless another process just did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Vapid02()
    pem.generate_keys()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:  # a worker or another process created it first: use theirs
        return
    with os.fdopen(fd, "wb") as out:
        out.write(pem.private_pem())


class Keys:
    """The private key (never leaves this object) and what is derived from it: the public
    key for ``GET /v1/push/key`` and signed VAPID headers, cached per push service."""

    def __init__(self, vapid: Vapid02, source: str, subject: str, path: Path | None = None):
        self._vapid = vapid
        self.source = source
        #: the key file (None: the key came from the environment)
        self.path = path
        self.subject = subject
        point = vapid.public_key.public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
        #: base64url of the uncompressed P-256 point (65 bytes, 0x04 first)
        self.public_key = b64url(point)
        self._signed: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, key_file: str | os.PathLike | None = None,
             default: str | os.PathLike | None = None) -> Keys:
        """The server's keys (see the module docstring); creates the key file on first start.
        ``key_file`` overrides the environment; ``default`` replaces
        :data:`DEFAULT_KEY_FILE` (the server passes one next to its SQLite store).

        Raises
        ------
        VapidKeyError
        """
        subject = os.environ.get(SUBJECT_ENV) or DEFAULT_SUBJECT
        if not subject.startswith(("mailto:", "https:")):
            raise VapidKeyError(f"{SUBJECT_ENV}={subject!r}: use a mailto: or https: "
                                "contact (RFC 8292 `sub`)")
        raw = (os.environ.get(KEY_ENV) or "").strip()
        if raw and not key_file:
            try:
                vapid = (Vapid02.from_pem(raw.encode()) if raw.startswith("-----")
                         else Vapid02.from_raw(raw.encode()))
            except Exception as exc:  # noqa: BLE001 - py_vapid raises several kinds
                raise VapidKeyError(f"env {KEY_ENV} is not a PEM or base64url P-256 private "
                                    f"key ({type(exc).__name__}); create one with "
                                    "`vapid --gen` or let the server create its key file"
                                    ) from None
            return cls(vapid, f"env {KEY_ENV}", subject)
        path = Path(key_file or os.environ.get(KEY_FILE_ENV) or default or DEFAULT_KEY_FILE)
        if not path.exists():
            _create(path)
        try:
            mode = path.stat().st_mode
            pem = path.read_bytes()
        except OSError as exc:
            raise VapidKeyError(f"VAPID key file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise VapidKeyError(f"VAPID key file {path} is readable by others; "
                                f"`chmod 600 {path}`")
        try:
            vapid = Vapid02.from_pem(pem)
        except Exception as exc:  # noqa: BLE001
            raise VapidKeyError(f"VAPID key file {path} is not a PEM P-256 private key "
                                f"({type(exc).__name__}); move it away and restart to create "
                                "a new one (subscribers then subscribe again)") from None
        return cls(vapid, f"file {path.resolve()}", subject, path.resolve())

    def authorization(self, endpoint: str) -> str:
        """The ``Authorization: vapid t=<JWT>, k=<public key>`` header for a push to
        ``endpoint`` (the JWT's ``aud`` is its origin), signed once per
        :data:`TOKEN_SECONDS` per origin."""
        scheme, _, rest = endpoint.partition("://")
        audience = f"{scheme}://{rest.split('/', 1)[0]}"
        now = time.time()
        with self._lock:
            cached = self._signed.get(audience)
            if cached is not None and cached[0] > now + 60:
                return cached[1]
        expires = int(now) + TOKEN_SECONDS
        header = self._vapid.sign({"aud": audience, "sub": self.subject,
                                   "exp": expires})["Authorization"]
        with self._lock:
            self._signed[audience] = (expires, header)
        return header


def default_key_file(store_path: Path | None) -> Path:
    """Where the key is kept by default: next to a SQLite store (``<store>.vapid.pem``),
    else :data:`DEFAULT_KEY_FILE`."""
    if store_path is None:
        return Path(DEFAULT_KEY_FILE)
    return store_path.with_name(store_path.name + ".vapid.pem")
