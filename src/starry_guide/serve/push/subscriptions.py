"""Push subscriptions and the ledger of nudges, in the serving store (Alembic revision 0004).

Tables
------
``push_subscriptions``
    ``subscription_id``, ``secret_sha256`` (the SHA-256 of the bearer secret that deletes
    it; the secret itself is never stored), the push service's ``endpoint`` and the
    browser's public keys ``p256dh`` and ``auth`` (what encryption needs), ``station_id``,
    ``min_probability``, ``min_minutes``, ``time_zone`` and optional ``quiet_start`` /
    ``quiet_end`` (local ``HH:MM``), ``created_at`` and ``last_seen_at`` (the app re-sends
    its subscription on each start; unseen for the expiry period, it is deleted). No
    address, no location, no user id.
``push_deliveries``
    one row per nudge claimed: ``subscription_id``, ``night``, the window's ``window_start``
    / ``window_end``, ``status`` (``sending`` while in flight, ``sent``), ``claimed_at``,
    ``sent_at``. Deleted with the subscription (``ON DELETE CASCADE``).

Exactly one sender per due push: a decider pass claims a station's subscriptions in one
write transaction — ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (a second process or
host deciding the same station at the same moment skips the rows the first holds, and sees
its ledger rows afterwards), the store's writer lock on SQLite (one writer per host) —
reads their ledger for the night, asks the decider which window is due and inserts the
ledger rows before anything is sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from starry_guide.serve.store.database import Store, UTCDateTime

metadata = sa.MetaData()

push_subscriptions = sa.Table(
    "push_subscriptions", metadata,
    sa.Column("subscription_id", sa.String(32), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("endpoint", sa.String(2048), nullable=False, unique=True),
    sa.Column("p256dh", sa.String(100), nullable=False),
    sa.Column("auth", sa.String(40), nullable=False),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("min_probability", sa.Float, nullable=False),
    sa.Column("min_minutes", sa.Integer, nullable=False),
    sa.Column("time_zone", sa.String(64), nullable=False),
    sa.Column("quiet_start", sa.String(5)),
    sa.Column("quiet_end", sa.String(5)),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
)

push_deliveries = sa.Table(
    "push_deliveries", metadata,
    sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(32),
              sa.ForeignKey("push_subscriptions.subscription_id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("night", sa.Date, nullable=False),
    sa.Column("window_start", UTCDateTime, nullable=False),
    sa.Column("window_end", UTCDateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("claimed_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """One stored subscription (its secret's hash left out)."""

    subscription_id: str
    endpoint: str
    p256dh: str
    auth: str
    station_id: str
    min_probability: float
    min_minutes: int
    time_zone: str
    quiet_start: str | None = None
    quiet_end: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Subscription:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_webpush(self) -> dict:
        """The subscription as the browser's ``PushSubscription.toJSON()`` gives it."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclasses.dataclass(frozen=True)
class Delivered:
    """A window already claimed for a subscription's night (sent or in flight)."""

    start: dt.datetime
    end: dt.datetime


@dataclasses.dataclass(frozen=True)
class Claim:
    """A push this process must now send: the subscription, its night, the window."""

    delivery_id: int
    subscription: Subscription
    night: dt.date
    window: dict


class PushStore:
    """The push tables of a :class:`~starry_guide.serve.store.database.Store`."""

    def __init__(self, store: Store):
        self.store = store

    # ------------------------------------------------------------------ the API's side

    def subscribe(self, *, endpoint: str, p256dh: str, auth: str, station_id: str,
                  min_probability: float, min_minutes: int, time_zone: str,
                  quiet_start: str | None, quiet_end: str | None) -> tuple[str, str, bool]:
        """Store a subscription, or update the one with the same endpoint (the browser's
        push subscription is unique per endpoint) with a fresh secret.

        Returns its id, its new bearer secret (shown once; only its hash is kept) and
        whether it is new.
        """
        secret = secrets.token_urlsafe(32)
        stamp = _now()
        values = {"secret_sha256": _digest(secret), "p256dh": p256dh, "auth": auth,
                  "station_id": station_id, "min_probability": float(min_probability),
                  "min_minutes": int(min_minutes), "time_zone": time_zone,
                  "quiet_start": quiet_start, "quiet_end": quiet_end, "last_seen_at": stamp}
        with self.store.write() as db:
            existing = db.execute(sa.select(push_subscriptions.c.subscription_id).where(
                push_subscriptions.c.endpoint == endpoint)).first()
            if existing is not None:
                db.execute(push_subscriptions.update().where(
                    push_subscriptions.c.subscription_id == existing[0]).values(**values))
                return existing[0], secret, False
            subscription_id = uuid.uuid4().hex
            try:
                with db.begin_nested():
                    db.execute(push_subscriptions.insert().values(
                        subscription_id=subscription_id, endpoint=endpoint, created_at=stamp,
                        **values))
            except sa.exc.IntegrityError:  # the same endpoint, concurrently (PostgreSQL)
                existing = db.execute(sa.select(push_subscriptions.c.subscription_id).where(
                    push_subscriptions.c.endpoint == endpoint)).one()
                db.execute(push_subscriptions.update().where(
                    push_subscriptions.c.subscription_id == existing[0]).values(**values))
                return existing[0], secret, False
            return subscription_id, secret, True

    def unsubscribe(self, subscription_id: str, secret: str) -> str:
        """Delete a subscription (and its ledger) if ``secret`` is its bearer secret.

        Returns ``deleted``, ``unknown`` (no such subscription) or ``forbidden``."""
        with self.store.write() as db:
            row = db.execute(sa.select(push_subscriptions.c.secret_sha256).where(
                push_subscriptions.c.subscription_id == subscription_id)).first()
            if row is None:
                return "unknown"
            if not hmac.compare_digest(row[0], _digest(secret)):
                return "forbidden"
            self._delete(db, [subscription_id])
            return "deleted"

    def get(self, subscription_id: str) -> Subscription | None:
        with self.store.engine.connect() as db:
            row = db.execute(sa.select(push_subscriptions).where(
                push_subscriptions.c.subscription_id == subscription_id)).mappings().first()
        return None if row is None else Subscription.from_row(row)

    def count(self) -> int:
        with self.store.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(push_subscriptions))
                       .scalar_one())

    def deliveries(self, subscription_id: str | None = None) -> list[dict]:
        """The ledger (of one subscription), oldest first."""
        query = sa.select(push_deliveries).order_by(push_deliveries.c.delivery_id)
        if subscription_id is not None:
            query = query.where(push_deliveries.c.subscription_id == subscription_id)
        with self.store.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]

    # ------------------------------------------------------------------ the decider's side

    def stations(self) -> list[str]:
        """The stations that have at least one subscription."""
        with self.store.engine.connect() as db:
            return [r[0] for r in db.execute(sa.select(push_subscriptions.c.station_id)
                                             .distinct().order_by(
                                                 push_subscriptions.c.station_id))]

    def has_subscriptions(self, station_id: str) -> bool:
        """Whether anyone subscribed to ``station_id`` (one indexed query: the feed's
        stations without subscribers cost the decider no plan)."""
        with self.store.engine.connect() as db:
            return db.execute(sa.select(push_subscriptions.c.subscription_id).where(
                push_subscriptions.c.station_id == station_id).limit(1)).first() is not None

    def claim(self, station_id: str, night: dt.date,
              due: Callable[[Subscription, list[Delivered]], dict | None]) -> list[Claim]:
        """Claim the pushes due at ``station_id`` for ``night``: ``due(subscription,
        delivered)`` (the decider) names the window to push, or None; a ledger row
        (``sending``) is written for each before this returns, in one transaction with the
        rows locked (see the module docstring)."""
        stamp = _now()
        claims = []
        with self.store.write() as db:
            query = sa.select(push_subscriptions).where(
                push_subscriptions.c.station_id == station_id).order_by(
                push_subscriptions.c.subscription_id)
            if db.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            subscriptions = [Subscription.from_row(r) for r in db.execute(query).mappings()]
            if not subscriptions:
                return []
            delivered: dict[str, list[Delivered]] = {}
            ids = [s.subscription_id for s in subscriptions]
            for start in range(0, len(ids), 500):
                for row in db.execute(sa.select(
                        push_deliveries.c.subscription_id, push_deliveries.c.window_start,
                        push_deliveries.c.window_end).where(
                        push_deliveries.c.night == night,
                        push_deliveries.c.subscription_id.in_(ids[start:start + 500]))):
                    delivered.setdefault(row[0], []).append(Delivered(row[1], row[2]))
            rows = []
            for subscription in subscriptions:
                window = due(subscription, delivered.get(subscription.subscription_id, []))
                if window is not None:
                    rows.append((subscription, window))
            for subscription, window in rows:
                # one by one: the generated ids name the claims (few rows per station)
                result = db.execute(push_deliveries.insert().values(
                    subscription_id=subscription.subscription_id, night=night,
                    window_start=window["start"], window_end=window["end"],
                    status="sending", claimed_at=stamp))
                claims.append(Claim(int(result.inserted_primary_key[0]), subscription, night,
                                    window))
        return claims

    def settle(self, sent: Iterable[int], retry: Iterable[int], gone: Iterable[str]) -> None:
        """After sending: mark ``sent`` ledger rows, drop the claims to ``retry`` (a
        transient failure: the next pass tries again) and delete the subscriptions the push
        service said are ``gone`` (404/410)."""
        sent, retry, gone = list(sent), list(retry), list(gone)
        if not (sent or retry or gone):
            return
        stamp = _now()
        with self.store.write() as db:
            for start in range(0, len(sent), 500):
                db.execute(push_deliveries.update().where(
                    push_deliveries.c.delivery_id.in_(sent[start:start + 500])).values(
                    status="sent", sent_at=stamp))
            for start in range(0, len(retry), 500):
                db.execute(push_deliveries.delete().where(
                    push_deliveries.c.delivery_id.in_(retry[start:start + 500])))
            self._delete(db, gone)

    def expire(self, unseen_for: dt.timedelta) -> int:
        """Delete the subscriptions not seen for ``unseen_for``; how many."""
        cutoff = _now() - unseen_for
        with self.store.write() as db:
            ids = [r[0] for r in db.execute(sa.select(push_subscriptions.c.subscription_id)
                                            .where(push_subscriptions.c.last_seen_at < cutoff))]
            self._delete(db, ids)
        return len(ids)

    @staticmethod
    def _delete(db, ids: Sequence[str]) -> None:
        # explicit, not only ON DELETE CASCADE: SQLite enforces that only with its pragma
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            db.execute(push_deliveries.delete().where(
                push_deliveries.c.subscription_id.in_(chunk)))
            db.execute(push_subscriptions.delete().where(
                push_subscriptions.c.subscription_id.in_(chunk)))
