"""A loopback Web Push service for the tests and the benchmark: a real HTTP server that
plays the browsers' push service (RFC 8030) *and* the browsers themselves.

Each :meth:`PushService.subscriber` is a browser's subscription: a fresh P-256 key pair and
16-byte auth secret (the browser's side) and an endpoint on this server. Every message
posted to an endpoint is checked as a real push service and browser would:

- the ``Authorization: vapid t=<JWT>,k=<key>`` header: ``k`` must be the server's public key
  as ``GET /v1/push/key`` serves it (:attr:`PushService.expected_key`), the JWT's ES256
  signature must verify against it, ``aud`` must be this service's origin and ``exp`` in
  the next 24 hours (RFC 8292);
- the body is decrypted with the subscriber's private key and auth secret
  (``aes128gcm``, RFC 8291, http_ece) and must be JSON.

Messages that fail a check are answered 400/401/403 and kept in :attr:`PushService.rejected`
(the tests assert it stays empty); accepted ones in :attr:`PushService.messages`. An endpoint
can be told to answer something else (410, 500, a redirect) with :meth:`answer`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclasses.dataclass
class Subscriber:
    """One browser's push subscription: what it sends the server and its private half."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def subscription(self) -> dict:
        """``PushSubscription.toJSON()``."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}


@dataclasses.dataclass
class Message:
    token: str
    payload: dict
    headers: dict
    received: float  # time.time()


def verify_vapid(header: str, expected_key: str, audience: str) -> str | None:
    """Why an ``Authorization`` header is not a valid VAPID one for ``expected_key`` and
    ``audience``, or None."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "vapid":
        return f"scheme {scheme!r} is not vapid"
    parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    if parts.get("k") != expected_key:
        return "k is not the server's public key"
    try:
        head, claims, signature = parts["t"].split(".")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
        raw = unb64url(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                   int.from_bytes(raw[32:], "big"))
        key.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        header_json, claims_json = json.loads(unb64url(head)), json.loads(unb64url(claims))
    except (KeyError, ValueError, InvalidSignature) as exc:
        return f"the JWT does not verify: {type(exc).__name__}"
    if header_json.get("alg") != "ES256":
        return f"alg {header_json.get('alg')!r}"
    if claims_json.get("aud") != audience:
        return f"aud {claims_json.get('aud')!r} is not {audience!r}"
    if not time.time() < claims_json.get("exp", 0) <= time.time() + 24 * 3600:
        return "exp is not within the next 24 hours"
    if not str(claims_json.get("sub", "")).startswith(("mailto:", "https:")):
        return "no sub contact"
    return None


class PushService:
    """The loopback push service (start with ``with PushService() as service``)."""

    def __init__(self, expected_key: str | None = None, host: str = "127.0.0.1"):
        self.expected_key = expected_key
        self.messages: list[Message] = []
        self.rejected: list[tuple[str, str]] = []
        self.subscribers: dict[str, Subscriber] = {}
        self.answers: dict[str, tuple[int, dict]] = {}
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                token = self.path.rsplit("/", 1)[-1]
                status, extra = service.receive(token, dict(self.headers), body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PushService:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def subscriber(self, origin: str | None = None) -> Subscriber:
        """A new browser subscription with an endpoint on this service (or on ``origin``)."""
        token = secrets.token_urlsafe(16)
        sub = Subscriber(token, f"{origin or self.origin}/push/{token}",
                         ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16))
        with self.lock:
            self.subscribers[token] = sub
        return sub

    def answer(self, subscriber: Subscriber, status: int, headers: dict | None = None) -> None:
        """Answer ``status`` (and ``headers``) to pushes for ``subscriber`` from now on."""
        with self.lock:
            self.answers[subscriber.token] = (status, headers or {})

    def receive(self, token: str, headers: dict, body: bytes) -> tuple[int, dict]:
        sub = self.subscribers.get(token)
        if sub is None:
            return 404, {}
        lowered = {k.lower(): v for k, v in headers.items()}
        problem = None
        if self.expected_key is None:
            problem = "no expected key set"
        else:
            problem = verify_vapid(lowered.get("authorization", ""), self.expected_key,
                                   self.origin)
        if problem is None and lowered.get("content-encoding") != "aes128gcm":
            problem = f"content-encoding {lowered.get('content-encoding')!r}"
        if problem is None and "ttl" not in lowered:
            problem = "no TTL header"
        payload = None
        if problem is None:
            try:
                plain = http_ece.decrypt(body, private_key=sub.private_key,
                                         auth_secret=sub.auth, version="aes128gcm")
                payload = json.loads(plain)
            except Exception as exc:  # noqa: BLE001 - any failure to decrypt is a rejection
                problem = f"cannot decrypt: {type(exc).__name__}: {exc}"
        with self.lock:
            if problem is not None:
                self.rejected.append((token, problem))
                return 403 if "vapid" in problem or "JWT" in problem or "k " in problem else 400, {}
            status, extra = self.answers.get(token, (201, {}))
            if 200 <= status < 300:
                self.messages.append(Message(token, payload, lowered, time.time()))
                self.arrived.notify_all()
            return status, extra

    def for_subscriber(self, subscriber: Subscriber) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.token == subscriber.token]

    def wait_for(self, count: int, seconds: float = 60) -> list[Message]:
        """Wait until ``count`` messages arrived in all (or fail after ``seconds``)."""
        deadline = time.monotonic() + seconds
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} of {count} pushes arrived in "
                                         f"{seconds} s; rejected: {self.rejected[:3]}")
                self.arrived.wait(left)
            return list(self.messages)
