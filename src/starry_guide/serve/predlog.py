"""The prediction log: every prediction and every piece of user feedback, appended to SQLite
in WAL mode — the ground truth the monitoring stage will read."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    prediction_id TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    latitude      REAL NOT NULL,
    longitude     REAL NOT NULL,
    issued_for    TEXT NOT NULL,   -- time t of the latest observation
    horizon_h     INTEGER NOT NULL,
    target_time   TEXT NOT NULL,
    p_clear       REAL NOT NULL,
    PRIMARY KEY (prediction_id, horizon_h)
);
CREATE TABLE IF NOT EXISTS feedback (
    feedback_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id TEXT NOT NULL,
    received_at   TEXT NOT NULL,
    observed_at   TEXT,
    observed      TEXT NOT NULL CHECK (observed IN ('clear', 'cloudy'))
);
"""


class PredictionLog:
    """Appender for predictions and feedback: SQLite in WAL mode, so readers never block the
    writer, with a connection per thread (and per process: several server processes may
    share one log).

    The API commits a batch of predictions in one transaction (:meth:`log_many`) before it
    answers any of them: under load one commit serves a burst of requests instead of one
    each, and nothing is lost. A failing write fails every request it carried; nothing is
    dropped silently.
    """

    #: how often the background thread folds the WAL back into the database
    CHECKPOINT_SECONDS = 1.0

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        # Checkpoints copy the WAL into the database and fsync it: tens of milliseconds on a
        # busy disk. SQLite runs them inside whichever commit crosses 1000 pages — on the
        # server's event loop, stalling every request in flight. Here a thread does them.
        self._checkpointer = threading.Thread(target=self._checkpoint_forever,
                                              name="prediction-log-checkpoint", daemon=True)
        self._checkpointer.start()

    def _checkpoint_forever(self) -> None:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        while True:
            time.sleep(self.CHECKPOINT_SECONDS)
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for the writers
            except sqlite3.Error as exc:  # say so and try again; the WAL keeps every row
                logging.getLogger(__name__).warning("prediction log %s: checkpoint failed "
                                                    "(%s); retrying", self.path, exc)

    def _connect(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=30000")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread's job
            self._local.connection = connection
        return connection

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")

    def _insert(self, rows: list[tuple]) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def log_many(self, predictions: list[tuple[str, str, float, float, str,
                                               list[tuple[int, str, float]]]]) -> None:
        """Append predictions ``(prediction_id, model_version, latitude, longitude,
        issued_for, [(h, target_time, p_clear), ...])`` in one transaction: all or none."""
        now = self._now()
        self._insert([(prediction_id, now, version, latitude, longitude, issued_for, h, t, p)
                       for prediction_id, version, latitude, longitude, issued_for, horizons
                       in predictions for h, t, p in horizons])

    def has_prediction(self, prediction_id: str) -> bool:
        row = self._connect().execute(
            "SELECT 1 FROM predictions WHERE prediction_id = ? LIMIT 1", (prediction_id,))
        return row.fetchone() is not None

    def log_feedback(self, prediction_id: str, observed: str, observed_at: str | None) -> int:
        cursor = self._connect().execute(
            "INSERT INTO feedback (prediction_id, received_at, observed_at, observed) "
            "VALUES (?, ?, ?, ?)", (prediction_id, self._now(), observed_at, observed))
        return int(cursor.lastrowid)

    def count(self, table: str) -> int:
        if table not in ("predictions", "feedback"):
            raise ValueError(table)
        return int(self._connect().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
