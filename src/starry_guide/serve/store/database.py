"""The serving store: what production sees — stations, their hourly observations, every
prediction served (with the model's inputs) and users' feedback — behind SQLAlchemy Core.

SQLite in WAL mode by default (one file, zero set-up; several server processes of one machine
share it); PostgreSQL by URL (``postgresql+psycopg://user@host/db``) for serving on several
machines. The schema is versioned with Alembic: the migrations ship inside the package
(``starry_guide/serve/store/migrations``) and a store upgrades itself to the newest revision when it
is opened (several processes opening it at once are serialised by a lock).

Tables
------
``stations``
    ``station_id`` (primary key), ``latitude``, ``longitude``, ``elevation_m``, ``name``,
    ``registered_at``, ``updated_at``.
``observations``
    one row per (``station_id``, ``time``) — the hour, UTC — with the canonical weather
    columns (:data:`starry_guide.core.schema.WEATHER_COLUMNS`, NULL = missing), ``received_at``
    and ``revision`` (0 when first received, +1 per correction). A resent identical hour
    changes nothing; a changed one replaces the values and keeps the previous ones in
    ``observation_corrections``.
``observation_corrections``
    ``correction_id``, ``station_id``, ``time``, ``revision`` (the revision replaced), the
    replaced weather values, their ``received_at`` and ``corrected_at``.
``predictions``
    one row per served prediction: ``prediction_id`` (primary key), ``created_at``,
    ``model_version``, ``kind`` (``nowcast`` or ``night``), ``station_id`` (feed stations;
    NULL for ad-hoc requests), ``latitude``/``longitude`` (rounded to the store's
    ``location_decimals``), ``issued_for`` (the hour of the latest observation).
``prediction_horizons``
    (``prediction_id``, ``horizon_h``) -> ``target_time``, ``p_clear``,
    ``target_sun_elevation_deg`` (the sun at the target hour: label rules count night hours).
``prediction_inputs``
    ``prediction_id`` -> ``features``: JSON object of the hourly feature values at issue time
    (the model's inputs before the per-horizon target columns; NaN as null), so drift can be
    computed on served traffic.
``feedback``
    ``feedback_id``, ``prediction_id`` (unique: one answer per prediction), ``received_at``,
    ``observed_at``, ``observed`` (``clear``, ``partly`` or ``cloudy``).
``push_subscriptions``, ``push_deliveries``
    Web Push subscriptions and the record of pushes claimed: defined, and used, by
    :mod:`starry_guide.serve.push.subscriptions` (revision 0004).

All times are stored as UTC without offset and returned as aware UTC datetimes.

Durability: SQLite runs with ``synchronous=FULL`` (a commit returns after the WAL is fsynced),
PostgreSQL with its default ``synchronous_commit=on``; the API answers a prediction only
after its transaction committed.

Faults (PostgreSQL): every wait on the database is bounded — connecting
(:attr:`Store.CONNECT_TIMEOUT_S`), a statement (:attr:`Store.STATEMENT_TIMEOUT_MS`), data
sent and not acknowledged on a broken link (:attr:`Store.TCP_USER_TIMEOUT_MS`, with TCP
keepalives), a free connection of the pool (:attr:`Store.POOL_TIMEOUT_S`) — and a database
that cannot be reached, is restarting or timed out raises :class:`StoreUnavailable`, which the
API answers with ``503`` and ``Retry-After``. Connections are checked before use
(``pool_pre_ping``) and a disconnect invalidates the whole pool, so a restarted database is
used again by the next request, without a restart of the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from starry_guide.core.schema import WEATHER_COLUMNS

log = logging.getLogger(__name__)

#: where ``starry serve`` keeps the store unless told otherwise (``--store`` or the env var)
DEFAULT_PATH = "reports/serving_store.sqlite"
#: the environment variable holding a store URL
URL_ENV = "STARRY_STORE_URL"
#: predictions record their place to this many decimals (0.01° ≈ 1 km) unless told otherwise
LOCATION_DECIMALS = 2
KINDS = ("nowcast", "night")
#: model inputs that locate the user: stored rounded like the prediction's place
PLACE_INPUTS = frozenset({"latitude", "longitude"})
OBSERVED = ("clear", "partly", "cloudy")
MIGRATIONS = Path(__file__).with_name("migrations")
#: the newest schema revision (a test checks it is the migrations' head)
HEAD_REVISION = "0004"


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked (the message says why and what to do)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached, is restarting, or did not answer in time: nothing was
    written by the operation that raised it; retry after :attr:`retry_after_s` seconds."""

    retry_after_s = 2


class UnknownPrediction(StoreError):
    pass


class FeedbackExists(StoreError):
    pass


class UnknownStation(StoreError):
    pass


class UTCDateTime(sa.types.TypeDecorator):
    """Aware datetimes in, stored as naive UTC (both dialects), aware UTC out."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            raise ValueError(f"{value!r}: a naive datetime; pass an aware one (UTC)")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


metadata = sa.MetaData()

stations = sa.Table(
    "stations", metadata,
    sa.Column("station_id", sa.String(64), primary_key=True),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("elevation_m", sa.Float, nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("registered_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

observations = sa.Table(
    "observations", metadata,
    sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.station_id"),
              primary_key=True),
    sa.Column("time", UTCDateTime, primary_key=True),
    *(sa.Column(name, sa.Float) for name in WEATHER_COLUMNS),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
)

observation_corrections = sa.Table(
    "observation_corrections", metadata,
    sa.Column("correction_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("station_id", sa.String(64), nullable=False),
    sa.Column("time", UTCDateTime, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    *(sa.Column(name, sa.Float) for name in WEATHER_COLUMNS),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("corrected_at", UTCDateTime, nullable=False),
    sa.Index("ix_observation_corrections_station_time", "station_id", "time"),
)

predictions = sa.Table(
    "predictions", metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("model_version", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("station_id", sa.String(64)),
    sa.Column("latitude", sa.Float, nullable=False),
    sa.Column("longitude", sa.Float, nullable=False),
    sa.Column("issued_for", UTCDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('nowcast', 'night')", name="ck_predictions_kind"),
    sa.Index("ix_predictions_created_at", "created_at"),
    sa.Index("ix_predictions_station_issued", "station_id", "issued_for"),
)

prediction_horizons = sa.Table(
    "prediction_horizons", metadata,
    sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
              primary_key=True),
    sa.Column("horizon_h", sa.Integer, primary_key=True),
    sa.Column("target_time", UTCDateTime, nullable=False),
    sa.Column("p_clear", sa.Float, nullable=False),
    sa.Column("target_sun_elevation_deg", sa.Float),
    sa.Index("ix_prediction_horizons_target_time", "target_time"),
)

prediction_inputs = sa.Table(
    "prediction_inputs", metadata,
    sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
              primary_key=True),
    sa.Column("features", sa.Text, nullable=False),
)

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), sa.ForeignKey("predictions.prediction_id"),
              nullable=False, unique=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("observed_at", UTCDateTime),
    sa.Column("observed", sa.String(16), nullable=False),
    sa.CheckConstraint("observed IN ('clear', 'partly', 'cloudy')", name="ck_feedback_observed"),
)

TABLES = {t.name: t for t in metadata.sorted_tables}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One served prediction, as :meth:`Store.log_predictions` records it.

    ``horizons`` holds ``(horizon_h, target_time, p_clear)``; ``features`` the hourly feature
    values at issue time (the model's inputs), or None.
    """

    prediction_id: str
    model_version: str
    kind: str
    latitude: float
    longitude: float
    issued_for: dt.datetime
    horizons: Sequence[tuple[int, dt.datetime, float]]
    station_id: str | None = None
    features: dict[str, float] | None = None
    target_sun_elevation_deg: Sequence[float] | None = None


def _utc(value: Any) -> dt.datetime | None:
    """A stored time as read by a driver without SQLAlchemy's types (SQLite: its text form;
    PostgreSQL: a naive datetime) -> aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: a station and its latest hours in one statement (the window's rows through the primary
#: key's index, newest first); ``:hours`` bounds the window
_STATE_QUERY = sa.text(
    "SELECT s.latitude, s.longitude, s.elevation_m, s.name, s.registered_at, s.updated_at, "
    "w.latest, w.earliest, w.hours, w.received "
    "FROM stations s CROSS JOIN ("
    "SELECT max(time) AS latest, min(time) AS earliest, count(*) AS hours, "
    "max(received_at) AS received FROM ("
    "SELECT time, received_at FROM observations WHERE station_id = :station_id "
    "ORDER BY time DESC LIMIT :hours) recent) w "
    "WHERE s.station_id = :station_id")


@dataclasses.dataclass(frozen=True)
class StationState:
    """What a station's nowcast and night plan are computed from, as one cheap read: its
    row and its latest hours' span, count and latest arrival (a new or corrected hour
    raises ``received``; a place or name change ``updated_at``). Equal keys (for one
    model) mean equal answers, on any worker of any host sharing the store."""

    station: dict[str, Any]
    latest: dt.datetime | None
    earliest: dt.datetime | None
    hours: int
    received: dt.datetime | None

    @classmethod
    def from_row(cls, station_id: str, row: tuple) -> StationState:
        (latitude, longitude, elevation_m, name, registered_at, updated_at, latest, earliest,
         hours, received) = row
        station = {"station_id": station_id, "latitude": float(latitude),
                   "longitude": float(longitude), "elevation_m": float(elevation_m),
                   "name": name, "registered_at": _utc(registered_at),
                   "updated_at": _utc(updated_at)}
        return cls(station, _utc(latest), _utc(earliest), int(hours), _utc(received))

    @functools.cached_property
    def key(self) -> tuple:
        s = self.station
        return (s["latitude"], s["longitude"], s["elevation_m"], s["updated_at"], self.latest,
                self.earliest, self.hours, self.received)

    @property
    def changed_at(self) -> dt.datetime:
        """When the station or its latest hours last changed in the store."""
        updated = self.station["updated_at"]
        return updated if self.received is None else max(updated, self.received)


class BulkInsert:
    """A table's ``INSERT`` of every column, compiled once for a dialect and run with the
    driver's own ``executemany`` on plain tuples (in the table's column order).

    Values go through the same bind processors SQLAlchemy would apply (e.g.
    :class:`UTCDateTime`, SQLite's datetime format), so rows read back exactly as rows
    written with ``connection.execute(table.insert(), dicts)``; the per-row machinery around
    them (parameter dictionaries, compiled-parameter construction) is skipped. Equal values
    in one batch (the hours shared by the predictions of one turn) are converted once.
    """

    def __init__(self, table: sa.Table, dialect: sa.engine.Dialect):
        self.columns = [c.name for c in table.columns]
        compiled = table.insert().compile(dialect=dialect,
                                          column_keys=self.columns)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = compiled.positiontup if self.positional else self.columns
        self.order = [self.columns.index(name) for name in order]
        processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                      for name in self.columns]
        #: (column index, bind processor) of the columns that have one
        self.active = [(i, process) for i, process in enumerate(processors)
                       if process is not None]

    def parameters(self, rows: Sequence[tuple]) -> list:
        if not rows:
            return []
        # column by column: each column with a bind processor converts its distinct values
        # once and maps the rest through a dict (a batch's thirteen rows per prediction share
        # ids and hours); the others pass as they are. Per-value Python loops here were the
        # writer thread's largest own cost (py-spy on POST /v1/nowcast).
        columns: list = list(zip(*rows, strict=True))
        for i, process in self.active:
            converted = {value: None if value is None else process(value)
                         for value in set(columns[i])}
            columns[i] = [converted[value] for value in columns[i]]
        if self.positional:
            return list(zip(*(columns[i] for i in self.order), strict=True))
        return [dict(zip(self.columns, values, strict=True))
                for values in zip(*columns, strict=True)]

    def run(self, connection: Connection, rows: Sequence[tuple]) -> None:
        connection.exec_driver_sql(self.sql, self.parameters(rows))


def resolve_url(store: str | os.PathLike | None = None) -> str:
    """A SQLAlchemy URL from ``--store`` (a URL or a file path), else the env variable
    :data:`URL_ENV`, else :data:`DEFAULT_PATH` (a SQLite file)."""
    value = str(store) if store else os.environ.get(URL_ENV) or DEFAULT_PATH
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).resolve()}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_prediction_id() -> str:
    """A new ``prediction_id``: 32 hex digits laid out as a UUID version 7 (RFC 9562) — the
    Unix time in milliseconds, then 74 random bits.

    Ids made one after another sort one after another, so a prediction's rows land at the
    end of the primary-key indexes of ``predictions``, ``prediction_horizons`` and
    ``prediction_inputs`` instead of at a random page of each (uuid4): measured on a SQLite
    store of 20,000 predictions, a commit of 10 wrote 270 KB to the WAL instead of 460 KB
    and took 1.9 ms of CPU instead of 2.5 ms. The id tells its holder when it was made (to
    the millisecond), which the client who asked knows anyway.
    """
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    value = ((milliseconds & (1 << 48) - 1) << 80 | 0x7 << 76  # time, version 7
             | (random >> 68) << 64  # 12 random bits
             | 0b10 << 62 | random & (1 << 62) - 1)  # RFC variant, 62 random bits
    return f"{value:032x}"


def _nullable(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _json_number(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


class Store:
    """The serving store at ``url`` (see :func:`resolve_url`), upgraded to the newest schema.

    Parameters
    ----------
    url : a SQLAlchemy URL (``sqlite:///path``, ``postgresql+psycopg://...``) or a file path
    location_decimals : decimals kept of a prediction's latitude/longitude
    retention_days : when > 0, the maintenance thread purges (hourly) what arrived longer
        ago than this (:meth:`purge`)
    maintenance : run the background maintenance thread (SQLite WAL checkpoints, retention)
    """

    #: how often the maintenance thread checkpoints the SQLite WAL
    CHECKPOINT_SECONDS = 1.0
    #: PostgreSQL: seconds to establish a connection (libpq ``connect_timeout``, >= 2)
    CONNECT_TIMEOUT_S = 3
    #: PostgreSQL: longest statement (server-side ``statement_timeout``); retention's purge
    #: lifts it for its own transaction
    STATEMENT_TIMEOUT_MS = 5000
    #: PostgreSQL: data unacknowledged this long on a broken link fails the connection
    #: (``tcp_user_timeout``; without it a cut cable holds a request for TCP's ~15 minutes)
    TCP_USER_TIMEOUT_MS = 4000
    #: PostgreSQL: seconds a request waits for a free connection of the pool
    POOL_TIMEOUT_S = 5.0
    #: the longest a request waits on an unreachable database before StoreUnavailable: a
    #: pre-ping on a dead connection, then one reconnect (documented as the API's deadline)
    DEADLINE_S = TCP_USER_TIMEOUT_MS / 1000 + CONNECT_TIMEOUT_S

    def __init__(self, url: str | os.PathLike | None, *,
                 location_decimals: int = LOCATION_DECIMALS, retention_days: int = 0,
                 maintenance: bool = True):
        self.url = resolve_url(url)
        if not 0 <= int(location_decimals) <= 6:
            raise StoreError(f"location_decimals = {location_decimals}: use 0..6 (2 keeps "
                             "0.01°, about 1 km)")
        if int(retention_days) < 0:
            raise StoreError(f"retention_days = {retention_days}: use 0 (keep everything) "
                             "or a number of days")
        self.location_decimals = int(location_decimals)
        self.retention_days = int(retention_days)
        parsed = sa.engine.make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.path: Path | None = None
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise StoreError(f"{self.url}: a SQLite store needs a file path")
            self.path = Path(parsed.database)
            _create_private(self.path)
            self.engine = sa.create_engine(parsed, connect_args={"timeout": 30.0,
                                                                 "check_same_thread": False})
            _sqlite_pragmas(self.engine)
        elif self.dialect == "postgresql":
            self.engine = sa.create_engine(
                parsed, pool_pre_ping=True, pool_timeout=self.POOL_TIMEOUT_S,
                connect_args=postgres_timeouts(
                    self.CONNECT_TIMEOUT_S, self.STATEMENT_TIMEOUT_MS,
                    self.TCP_USER_TIMEOUT_MS) | dict(parsed.query))
            _unavailable_on_disconnect(self.engine)
        else:
            raise StoreError(f"{parsed.render_as_string(hide_password=True)}: unsupported "
                             "store; use a SQLite file path or a postgresql+psycopg:// URL")
        self._writer = self.engine.execution_options(starry_write=True)
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._lock_pid: int | None = None
        self.lock_path = None if self.path is None else self.path.with_name(
            self.path.name + ".lock")
        try:
            upgrade(self.engine)
        except sa.exc.OperationalError as exc:
            raise StoreError(f"cannot open the store {self.display_url}: {exc.orig}") from None
        self.maintenance = Maintenance(self)
        if maintenance:
            self.maintenance.start()

    @property
    def display_url(self) -> str:
        """The URL without its password (for logs and messages)."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.maintenance.stop()
        self.engine.dispose()
        if self._lock_fd is not None and self._lock_pid == os.getpid():
            os.close(self._lock_fd)
            self._lock_fd = self._lock_pid = None

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: all or nothing.

        SQLite: writers take the store's writer lock (:meth:`writer_lock`) and then
        ``BEGIN IMMEDIATE``. SQLite lets one writer in at a time anyway, but its busy handler
        polls with sleeps, so a TRUNCATE checkpoint waiting that way would be overtaken by
        writers for as long as they keep coming; in the lock's queue it gets its turn.
        """
        with self.writer_lock(), self._writer.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive across the threads and processes sharing a SQLite store (``flock`` on
        ``<store>.lock``); nothing for PostgreSQL."""
        if self.path is None:
            yield
            return
        with self._thread_lock:
            if self._lock_pid != os.getpid():  # a forked child needs its own description
                self._lock_fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
                self._lock_pid = os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ predictions

    def log_predictions(self, batch: Iterable[Prediction]) -> None:
        """Record predictions in one transaction: all or none.

        The rows go to the driver's ``executemany`` as plain tuples (:class:`BulkInsert`):
        thirteen rows per prediction through SQLAlchemy's per-row parameter handling held the
        GIL for longer than the forecast itself (py-spy on ``POST /v1/nowcast``)."""
        stamp = now()
        heads, horizons, inputs = [], [], []
        d = self.location_decimals
        for p in batch:
            if p.kind not in KINDS:
                raise ValueError(f"kind {p.kind!r} is not one of {KINDS}")
            heads.append((p.prediction_id, stamp, p.model_version, p.kind, p.station_id,
                          round(p.latitude, d), round(p.longitude, d), p.issued_for))
            suns = p.target_sun_elevation_deg or [None] * len(p.horizons)
            horizons.extend((p.prediction_id, h, t, float(pc),
                             None if sun is None else float(sun))
                            for (h, t, pc), sun in zip(p.horizons, suns, strict=True))
            if p.features is not None:
                # a place among the inputs is kept no more precisely than the prediction's
                features = {k: _json_number(round(float(v), d) if k in PLACE_INPUTS else v)
                            for k, v in p.features.items()}
                inputs.append((p.prediction_id, json.dumps(features, separators=(",", ":"))))
        if not heads:
            return
        with self.write() as db:
            self._insert(predictions).run(db, heads)
            if horizons:
                self._insert(prediction_horizons).run(db, horizons)
            if inputs:
                self._insert(prediction_inputs).run(db, inputs)

    def _insert(self, table: sa.Table) -> BulkInsert:
        inserts = self.__dict__.setdefault("_inserts", {})
        if table.name not in inserts:
            inserts[table.name] = BulkInsert(table, self.engine.dialect)
        return inserts[table.name]

    def ping(self) -> None:
        """One round trip to the database (``SELECT 1``), bounded by the timeouts above.

        Raises
        ------
        StoreUnavailable
        """
        try:
            with self.engine.connect() as db:
                db.execute(sa.text("SELECT 1"))
        except sa.exc.TimeoutError as exc:  # no free connection in the pool
            raise StoreUnavailable(f"the store {self.display_url} is busy: {exc}") from None
        except sa.exc.OperationalError as exc:  # SQLite: the file cannot be opened
            raise StoreUnavailable(f"the store {self.display_url} is unavailable: "
                                   f"{exc.orig}") from None

    def has_prediction(self, prediction_id: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(sa.select(predictions.c.prediction_id).where(
                predictions.c.prediction_id == prediction_id)).first() is not None

    def add_feedback(self, prediction_id: str, observed: str,
                     observed_at: dt.datetime | None = None) -> int:
        """Record what the user saw; one answer per prediction.

        Raises
        ------
        UnknownPrediction, FeedbackExists
        """
        if observed not in OBSERVED:
            raise ValueError(f"observed {observed!r} is not one of {OBSERVED}")
        with self.write() as db:
            if db.execute(sa.select(predictions.c.prediction_id).where(
                    predictions.c.prediction_id == prediction_id)).first() is None:
                raise UnknownPrediction(f"unknown prediction_id {prediction_id!r}")
            earlier = db.execute(sa.select(feedback.c.observed, feedback.c.received_at).where(
                feedback.c.prediction_id == prediction_id)).first()
            if earlier is not None:
                raise FeedbackExists(
                    f"prediction {prediction_id!r} already has feedback ({earlier.observed!r}, "
                    f"received {earlier.received_at.isoformat()}); one answer per prediction")
            try:
                result = db.execute(feedback.insert().values(
                    prediction_id=prediction_id, received_at=now(), observed_at=observed_at,
                    observed=observed))
            except sa.exc.IntegrityError:  # a concurrent answer won the race (PostgreSQL)
                raise FeedbackExists(f"prediction {prediction_id!r} already has feedback; "
                                     "one answer per prediction") from None
            return int(result.inserted_primary_key[0])

    def count(self, table: str) -> int:
        """Rows in one of the store's tables."""
        if table not in TABLES:
            raise ValueError(f"{table!r} is not one of the store's tables {sorted(TABLES)}")
        with self.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(TABLES[table]))
                       .scalar_one())

    # ------------------------------------------------------------------ stations

    def upsert_station(self, station_id: str, latitude: float, longitude: float,
                       elevation_m: float = 0.0, name: str | None = None) -> bool:
        """Register a station or update its place and name; True when it is new."""
        stamp = now()
        values = {"latitude": float(latitude), "longitude": float(longitude),
                  "elevation_m": float(elevation_m), "name": name, "updated_at": stamp}
        with self.write() as db:
            updated = db.execute(stations.update().where(
                stations.c.station_id == station_id).values(**values)).rowcount
            if updated:
                return False
            try:
                with db.begin_nested():
                    db.execute(stations.insert().values(station_id=station_id,
                                                        registered_at=stamp, **values))
            except sa.exc.IntegrityError:  # registered concurrently (PostgreSQL): update it
                db.execute(stations.update().where(
                    stations.c.station_id == station_id).values(**values))
                return False
            return True

    def stations(self) -> list[dict[str, Any]]:
        """Every registered station, by id."""
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(
                sa.select(stations).order_by(stations.c.station_id)).mappings()]

    def station(self, station_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(stations).where(
                stations.c.station_id == station_id)).mappings().first()
        return None if row is None else dict(row)

    # ------------------------------------------------------------------ observations

    def ingest_observations(self, station_id: str, rows: Sequence[dict[str, Any]]
                            ) -> dict[str, list[dt.datetime]]:
        """Store hourly observations of a registered station, idempotently per hour.

        ``rows``: dicts with an aware ``time`` (on the hour, distinct) and any of the weather
        columns (missing = None). A new hour is inserted; a resent identical hour changes
        nothing; an hour whose values differ replaces them (``revision`` + 1) and its previous
        values go to ``observation_corrections``. One transaction: all or none.

        Returns
        -------
        The hours (UTC) that were ``new``, ``unchanged`` and ``corrected``.

        Raises
        ------
        UnknownStation
        """
        stamp = now()
        incoming = {}
        for row in rows:
            time_utc = row["time"].astimezone(dt.UTC)
            if time_utc in incoming:
                raise ValueError(f"hour {time_utc.isoformat()} appears twice")
            incoming[time_utc] = {c: _nullable(row.get(c)) for c in WEATHER_COLUMNS}
        outcome: dict[str, list[dt.datetime]] = {"new": [], "unchanged": [], "corrected": []}
        with self.write() as db:
            # the station row's lock serialises concurrent batches of one station
            lock = sa.select(stations.c.station_id).where(stations.c.station_id == station_id)
            if db.dialect.name == "postgresql":
                lock = lock.with_for_update()
            if db.execute(lock).first() is None:
                raise UnknownStation(f"station {station_id!r} is not registered; register it "
                                     f"with PUT /v1/stations/{station_id} first")
            existing = {}
            hours = sorted(incoming)
            for start in range(0, len(hours), 500):
                chunk = hours[start:start + 500]
                for row in db.execute(sa.select(observations).where(
                        observations.c.station_id == station_id,
                        observations.c.time.in_(chunk))).mappings():
                    existing[row["time"]] = row
            inserts, corrections = [], []
            for hour in hours:
                values = incoming[hour]
                old = existing.get(hour)
                if old is None:
                    inserts.append({"station_id": station_id, "time": hour, **values,
                                    "received_at": stamp, "revision": 0})
                    outcome["new"].append(hour)
                elif all(_same(old[c], values[c]) for c in WEATHER_COLUMNS):
                    outcome["unchanged"].append(hour)
                else:
                    corrections.append({
                        "station_id": station_id, "time": hour, "revision": old["revision"],
                        **{c: old[c] for c in WEATHER_COLUMNS},
                        "received_at": old["received_at"], "corrected_at": stamp})
                    db.execute(observations.update().where(
                        observations.c.station_id == station_id,
                        observations.c.time == hour).values(
                            **values, received_at=stamp, revision=old["revision"] + 1))
                    outcome["corrected"].append(hour)
            if inserts:
                db.execute(observations.insert(), inserts)
            if corrections:
                db.execute(observation_corrections.insert(), corrections)
        return outcome

    def recent_observations(self, station_id: str, hours: int) -> list[dict[str, Any]]:
        """The station's latest ``hours`` stored hours (latest revision), oldest first."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(observations).where(
                observations.c.station_id == station_id).order_by(
                observations.c.time.desc()).limit(hours)).mappings().all()
        return [dict(row) for row in reversed(rows)]

    def station_state(self, station_id: str, hours: int) -> StationState | None:
        """The station's row and a summary of its latest ``hours`` stored hours, in one
        indexed query (see :class:`StationState`); None when it is not registered.

        SQLite: on a connection of this thread kept open for these reads (a local file: no
        network wait, so the event loop may call it directly); PostgreSQL: a pooled
        connection (call it from a worker thread)."""
        parameters = {"station_id": station_id, "hours": int(hours)}
        if self.path is None:
            with self.engine.connect() as db:
                row = db.execute(_STATE_QUERY, parameters).first()
        else:
            row = self._read_sqlite(str(_STATE_QUERY), parameters)
        return None if row is None else StationState.from_row(station_id, tuple(row))

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` on this thread's read connection: it changes
        whenever another connection — another thread, worker process — commits to the
        store, so an unchanged value means that nothing read before has changed. None for
        PostgreSQL (no such counter: read the state)."""
        if self.path is None:
            return None
        return int(self._read_sqlite("PRAGMA data_version", {})[0])

    def _read_sqlite(self, statement: str, parameters: dict) -> tuple | None:
        """One row from this thread's read connection. A driver error is raised as
        SQLAlchemy's (``sqlalchemy.exc.OperationalError`` …), like every other store
        access, so the service treats a store in trouble the same way on every path."""
        try:
            return self._reader().execute(statement, parameters).fetchone()
        except sqlite3.Error as exc:
            self.__dict__["_readers"] = threading.local()  # reconnect next time
            raise sa.exc.DBAPIError.instance(statement, parameters, exc, sqlite3.Error
                                             ) from exc

    def _reader(self) -> sqlite3.Connection:
        local = self.__dict__.setdefault("_readers", threading.local())
        reader = getattr(local, "connection", None)
        if reader is None or getattr(local, "pid", None) != os.getpid():
            # autocommit: each query sees what is committed now, never an old snapshot
            reader = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                                     check_same_thread=False)
            # readers of a WAL database wait only for a recovery or a checkpoint's restart
            reader.execute("PRAGMA busy_timeout=5000")
            reader.execute("PRAGMA query_only=ON")
            local.connection, local.pid = reader, os.getpid()
        return reader

    def latest_prediction(self, station_id: str, kind: str = "nowcast"
                          ) -> dict[str, Any] | None:
        """The station's most recently issued prediction of ``kind`` with its horizons
        (``forecasts``), or None."""
        with self.engine.connect() as db:
            head = db.execute(sa.select(predictions).where(
                predictions.c.station_id == station_id, predictions.c.kind == kind).order_by(
                predictions.c.issued_for.desc(), predictions.c.created_at.desc()).limit(1)
            ).mappings().first()
            if head is None:
                return None
            forecasts = db.execute(sa.select(prediction_horizons).where(
                prediction_horizons.c.prediction_id == head["prediction_id"]).order_by(
                prediction_horizons.c.horizon_h)).mappings().all()
        return {**head, "forecasts": [dict(f) for f in forecasts]}

    # ------------------------------------------------------------------ labels

    @staticmethod
    def labelled_horizons(clear_max_opaque_tenths: float) -> sa.Select:
        """Every prediction horizon with its truth, as one query: the observed opaque cover at
        the target hour of the prediction's station (latest revision; NULL until that hour
        arrives, and for predictions not made for a registered station), and ``clear``
        (1/0, NULL when unknown) — opaque cover <= ``clear_max_opaque_tenths``, the label of
        training."""
        cover = observations.c.opaque_cloud_tenths
        return (
            sa.select(
                predictions.c.prediction_id, predictions.c.created_at,
                predictions.c.model_version, predictions.c.kind, predictions.c.station_id,
                predictions.c.latitude, predictions.c.longitude, predictions.c.issued_for,
                prediction_horizons.c.horizon_h, prediction_horizons.c.target_time,
                prediction_horizons.c.target_sun_elevation_deg, prediction_horizons.c.p_clear,
                cover.label("observed_opaque_cloud_tenths"),
                sa.case((cover.is_(None), None),
                        (cover <= clear_max_opaque_tenths, 1), else_=0).label("clear"))
            .select_from(prediction_horizons.join(
                predictions,
                predictions.c.prediction_id == prediction_horizons.c.prediction_id)
                .outerjoin(observations, sa.and_(
                    observations.c.station_id == predictions.c.station_id,
                    observations.c.time == prediction_horizons.c.target_time)))
        )

    # ------------------------------------------------------------------ retention

    def purge(self, older_than: dt.timedelta) -> dict[str, int]:
        """Delete what arrived more than ``older_than`` ago: predictions by ``created_at``
        (with their horizons, inputs and feedback), observations by ``received_at``,
        corrections by ``corrected_at``. Returns the rows deleted per table."""
        cutoff = now() - older_than
        old = sa.select(predictions.c.prediction_id).where(predictions.c.created_at < cutoff)
        deleted = {}
        with self.write() as db:
            if db.dialect.name == "postgresql":  # a large purge may take longer than a request
                db.exec_driver_sql("SET LOCAL statement_timeout = 0")
            for table in (feedback, prediction_inputs, prediction_horizons):
                deleted[table.name] = db.execute(table.delete().where(
                    table.c.prediction_id.in_(old))).rowcount
            deleted["predictions"] = db.execute(predictions.delete().where(
                predictions.c.created_at < cutoff)).rowcount
            deleted["observations"] = db.execute(observations.delete().where(
                observations.c.received_at < cutoff)).rowcount
            deleted["observation_corrections"] = db.execute(
                observation_corrections.delete().where(
                    observation_corrections.c.corrected_at < cutoff)).rowcount
        return deleted

    # ------------------------------------------------------------------ maintenance

    def file_sizes(self) -> dict[str, int]:
        """Bytes on disk of a SQLite store (database, WAL); empty for PostgreSQL."""
        if self.path is None:
            return {}
        sizes = {}
        for part, suffix in (("database", ""), ("wal", "-wal")):
            try:
                sizes[part] = (self.path.parent / (self.path.name + suffix)).stat().st_size
            except FileNotFoundError:
                sizes[part] = 0
        return sizes


def _create_private(path: Path) -> None:
    """Create the SQLite file readable by its owner only (SQLite gives the WAL and shared-
    memory files the database's permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def postgres_timeouts(connect_timeout_s: int, statement_timeout_ms: int,
                      tcp_user_timeout_ms: int) -> dict[str, Any]:
    """libpq connection parameters that bound every wait on the database: the connect
    timeout, the server's ``statement_timeout``, and TCP keepalives with a user timeout so
    that a silently broken link fails the connection instead of hanging it."""
    return {"connect_timeout": int(connect_timeout_s),
            "options": f"-c statement_timeout={int(statement_timeout_ms)}",
            "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
            "keepalives_count": 2, "tcp_user_timeout": int(tcp_user_timeout_ms)}


def _unavailable_on_disconnect(engine: Engine) -> None:
    """Raise :class:`StoreUnavailable` for errors that say the database is out of reach —
    refused or timed-out connections, a restarting server, a statement cancelled by its
    timeout — instead of SQLAlchemy's ``OperationalError``/``InterfaceError``. A pre-ping's
    failure is left alone: the pool reconnects after it."""

    @sa.event.listens_for(engine, "handle_error")
    def translate(context) -> None:
        if context.is_pre_ping:
            return
        if context.is_disconnect or isinstance(
                context.sqlalchemy_exception, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            reason = str(context.original_exception).strip().splitlines()
            raise StoreUnavailable(
                f"the store {engine.url.render_as_string(hide_password=True)} is unavailable "
                f"({reason[0] if reason else type(context.original_exception).__name__}); "
                "retry later") from context.original_exception


def _sqlite_pragmas(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record) -> None:
        # pysqlite's own transaction handling is off: SQLAlchemy's begin() below decides
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # the maintenance thread's job
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("starry_write")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the store's schema to ``revision`` (default: the newest), under a lock so that
    several processes opening one store at once migrate it once.

    A prediction log written before the store existed (``predictions`` with ``horizon_h``,
    no ``alembic_version``) is recognised as the first revision and migrated forward.
    """
    from alembic import command
    from alembic.util.exc import CommandError

    with engine.execution_options(starry_write=True).begin() as db:
        if db.dialect.name == "postgresql":
            db.exec_driver_sql("SELECT pg_advisory_xact_lock(8261120)")
        config = alembic_config(db)
        inspector = sa.inspect(db)
        names = set(inspector.get_table_names())
        if "alembic_version" not in names and "predictions" in names and "horizon_h" in {
                c["name"] for c in inspector.get_columns("predictions")}:
            command.stamp(config, "0001")
        try:
            command.upgrade(config, revision)
        except CommandError as exc:
            raise StoreError(f"the store's schema is not one this version knows ({exc}); "
                             "was it written by a newer Starry Guide?") from None


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as db:
        return MigrationContext.configure(db).get_current_revision()


class Maintenance:
    """Background upkeep of the store, reported by :meth:`status` (``/healthz``, ``/metrics``).

    SQLite: every :attr:`Store.CHECKPOINT_SECONDS` a PASSIVE checkpoint copies the WAL into
    the database without waiting for writers. Under a steady stream of writes a passive
    checkpoint never catches up with the end of the WAL, so the WAL is never restarted and
    grows without bound (measured: 180 MB in 10 s of two busy writers). So the WAL's size
    is looked at every :attr:`SIZE_CHECK_SECONDS`; above :attr:`WAL_LIMIT_BYTES` a
    TRUNCATE checkpoint takes the writer lock (queued with the writers, so they cannot
    starve it the way they starve SQLite's sleeping busy handler), copies the rest and
    truncates the WAL to zero bytes — a short stall of the writers that bounds the file.
    Retention (``Store.retention_days``) purges hourly, on both backends.
    """

    WAL_LIMIT_BYTES = 16 * 1024 * 1024
    #: how often the WAL's size is looked at (a stat) between checkpoints
    SIZE_CHECK_SECONDS = 0.2
    #: how often retention (``Store.retention_days`` > 0) purges
    PURGE_SECONDS = 3600.0
    #: consecutive failures after which the store reports itself failing
    FAILING_AFTER = 3

    def __init__(self, store: Store):
        self.store = store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.truncations = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.last_duration_s = 0.0
        self.last_purge: float | None = None
        self.purged_rows = 0

    def start(self) -> None:
        if self._thread is not None or (self.store.dialect != "sqlite"
                                        and not self.store.retention_days):
            return
        self._thread = threading.Thread(target=self._run_forever, name="store-maintenance",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run_forever(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.SIZE_CHECK_SECONDS):
            due = time.monotonic() - last >= self.store.CHECKPOINT_SECONDS
            if due or self.store.file_sizes().get("wal", 0) > self.WAL_LIMIT_BYTES:
                self.run_once()
                last = time.monotonic()

    def run_once(self) -> None:
        """One round of upkeep; a failure is logged, counted and reported, then retried."""
        start = time.monotonic()
        try:
            self._checkpoint()
            self._purge()
        except Exception as exc:  # noqa: BLE001 - reported in status(), retried next round
            with self._lock:
                self.runs += 1
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("store %s: maintenance failed (%s); retrying", self.store.display_url,
                        exc)
            return
        with self._lock:
            self.runs += 1
            self.consecutive_failures = 0
            self.last_success = time.time()
            self.last_duration_s = time.monotonic() - start

    def _purge(self) -> None:
        days = self.store.retention_days
        if not days or (self.last_purge is not None
                        and time.time() - self.last_purge < self.PURGE_SECONDS):
            return
        deleted = self.store.purge(dt.timedelta(days=days))
        with self._lock:
            self.last_purge = time.time()
            self.purged_rows += sum(deleted.values())
        if any(deleted.values()):
            log.info("store %s: retention (%d days) purged %s", self.store.display_url, days,
                     deleted)

    def _checkpoint(self) -> None:
        if self.store.dialect != "sqlite":
            return
        raw = self.store.engine.raw_connection()
        try:
            wal = self.store.file_sizes().get("wal", 0)
            mode = "TRUNCATE" if wal > self.WAL_LIMIT_BYTES else "PASSIVE"
            # TRUNCATE holds writers back (in the writer lock's queue, where it gets its
            # turn), then waits only for readers of the moment
            with self.store.writer_lock() if mode == "TRUNCATE" else contextlib.nullcontext():
                busy, _, _ = raw.driver_connection.execute(
                    f"PRAGMA wal_checkpoint({mode})").fetchone()
            if mode == "TRUNCATE":
                if busy:
                    raise StoreError(f"the WAL is {wal} bytes and a TRUNCATE checkpoint could "
                                     "not finish (a reader or writer held it for 30 s)")
                with self._lock:
                    self.truncations += 1
        finally:
            raw.close()

    def status(self) -> dict[str, Any]:
        """``state`` (``ok``, ``failing`` or ``off``), counters, last error and file sizes."""
        with self._lock:
            running = self._thread is not None
            state = ("failing" if self.consecutive_failures >= self.FAILING_AFTER else
                     "ok" if running or self.store.dialect != "sqlite" else "off")
            out = {"state": state, "runs": self.runs, "failures": self.failures,
                   "consecutive_failures": self.consecutive_failures,
                   "wal_truncations": self.truncations, "last_error": self.last_error,
                   "retention_days": self.store.retention_days,
                   "purged_rows": self.purged_rows,
                   "last_success_age_s": (None if self.last_success is None
                                          else round(time.time() - self.last_success, 3))}
        out["bytes"] = self.store.file_sizes()
        return out


class StoreCollector:
    """Prometheus collector of the store's upkeep (read at each scrape of ``/metrics``):
    ``starry_store_bytes{file}``, ``starry_store_maintenance_runs_total``,
    ``starry_store_maintenance_failures_total``, ``starry_store_maintenance_failing`` (1
    while failing), ``starry_store_wal_truncations_total``,
    ``starry_store_maintenance_last_success_age_seconds``, ``starry_store_purged_rows_total``.
    """

    def __init__(self, store: Store):
        self.store = store

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        status = self.store.maintenance.status()
        sizes = GaugeMetricFamily("starry_store_bytes", "store files on disk (SQLite)",
                                  labels=["file"])
        for part, size in status["bytes"].items():
            sizes.add_metric([part], size)
        yield sizes
        yield CounterMetricFamily("starry_store_maintenance_runs", "maintenance rounds",
                                  value=status["runs"])
        yield CounterMetricFamily("starry_store_maintenance_failures",
                                  "failed maintenance rounds", value=status["failures"])
        yield GaugeMetricFamily("starry_store_maintenance_failing",
                                "1 while the store's maintenance keeps failing",
                                value=int(status["state"] == "failing"))
        yield CounterMetricFamily("starry_store_wal_truncations",
                                  "TRUNCATE checkpoints that reset the SQLite WAL",
                                  value=status["wal_truncations"])
        yield CounterMetricFamily("starry_store_purged_rows", "rows deleted by retention",
                                  value=status["purged_rows"])
        age = status["last_success_age_s"]
        yield GaugeMetricFamily("starry_store_maintenance_last_success_age_seconds",
                                "seconds since the last successful maintenance round",
                                value=float("nan") if age is None else age)
