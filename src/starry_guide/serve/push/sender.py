"""Encrypt and deliver one push (RFC 8030 + RFC 8291 ``aes128gcm`` + RFC 8292 VAPID).

Encryption is pywebpush's (``WebPusher.encode``: a fresh ECDH key and salt per message,
http_ece underneath); the VAPID header comes from :class:`~starry_guide.serve.push.vapid.Keys`
(py-vapid). The HTTP request itself is made with httpcore through
:class:`~starry_guide.serve.push.endpoints.PublicOnlyBackend`, so that the SSRF guard holds
at connection time: no redirect is followed (httpcore never follows one), each request is
bounded in time (:data:`TIMEOUTS`) and the answer read is bounded in size
(:data:`MAX_ANSWER_BYTES`).
"""

from __future__ import annotations

import dataclasses
import json

import httpcore
from pywebpush import WebPusher

from starry_guide.serve.push.endpoints import PublicOnlyBackend, problem
from starry_guide.serve.push.vapid import Keys

#: seconds: connect, write the request, read the answer, wait for a pooled connection
TIMEOUTS = {"connect": 5.0, "write": 5.0, "read": 10.0, "pool": 10.0}
#: the most of a push service's answer that is read (the status is what matters)
MAX_ANSWER_BYTES = 16 * 1024
#: RFC 8291: a push message's encrypted body is at most 4096 bytes; aes128gcm adds 86 bytes
#: of header, 16 of tag and 1 of padding delimiter
MAX_PAYLOAD_BYTES = 4096 - 86 - 16 - 1


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the push service answered (``status`` None: no answer, see ``error``)."""

    status: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gone(self) -> bool:
        """The subscription no longer exists (RFC 8030 §7.3: 404, 410): delete it."""
        return self.status in (404, 410)


class Sender:
    """Sends pushes; thread-safe (one connection pool, shared by the sending threads)."""

    def __init__(self, keys: Keys, *, private_allowed: bool | None = None,
                 max_connections: int = 32):
        self.keys = keys
        self.private_allowed = private_allowed
        self.pool = httpcore.ConnectionPool(
            network_backend=PublicOnlyBackend(private_allowed), retries=0,
            max_connections=max_connections, max_keepalive_connections=max_connections)

    def close(self) -> None:
        self.pool.close()

    def send(self, subscription: dict, payload: dict, *, ttl: int, topic: str | None = None,
             urgency: str = "normal") -> Outcome:
        """Encrypt ``payload`` (JSON) for ``subscription`` (``{"endpoint", "keys":
        {"p256dh", "auth"}}``) and post it; never raises for the push service's sake."""
        endpoint = subscription["endpoint"]
        refused = problem(endpoint, self.private_allowed)
        if refused:
            return Outcome(None, f"refused: {refused}")
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"push payload of {len(data)} bytes; at most {MAX_PAYLOAD_BYTES}")
        try:
            body = WebPusher(subscription).encode(data, content_encoding="aes128gcm")["body"]
        except Exception as exc:  # noqa: BLE001 - keys that do not make a point, ...
            return Outcome(None, f"cannot encrypt for this subscription: {exc}")
        headers = [(b"Content-Type", b"application/octet-stream"),
                   (b"Content-Encoding", b"aes128gcm"),
                   (b"TTL", str(max(0, int(ttl))).encode()),
                   (b"Urgency", urgency.encode()),
                   (b"Authorization", self.keys.authorization(endpoint).encode())]
        if topic:
            headers.append((b"Topic", topic.encode()))
        try:
            with self.pool.stream("POST", endpoint, headers=headers, content=body,
                                  extensions={"timeout": TIMEOUTS}) as response:
                read = 0
                for chunk in response.iter_stream():
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES:
                        break
                return Outcome(response.status)
        except httpcore.TimeoutException as exc:
            return Outcome(None, f"timed out: {type(exc).__name__}")
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol,
                OSError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}")
