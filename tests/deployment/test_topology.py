"""The multi-host deployment under faults (see :mod:`tests.deployment.topology`): a
PostgreSQL host, two API hosts (``starry serve --workers 2``), nginx in front with passive
health checks, a feeder (``starry replay``) and a load host, each in its own network
namespace. Under steady load: one API host killed, the database restarted, one API host's
cable to the database pulled. Each scenario prints its numbers (the Deployment page quotes
them). All namespaces share this machine's cores: this shows correctness under faults, not
throughput.
"""

from __future__ import annotations

import time

import pytest

from starry_guide.serve.store.database import Store
from tests.deployment.topology import HOSTS, ROOT, Topology, unavailable_reason
from tests.serve.conftest import request_body

REASON = unavailable_reason()
pytestmark = [pytest.mark.deployment,
              pytest.mark.skipif(REASON is not None,
                                 reason=f"multi-host deployment tests skipped: {REASON}")]

#: no answer may take longer: a nowcast may wait out a stuck group commit and then its own
#: store call (2 deadlines), plus slack for a loaded 2-core machine
HANG_S = 2 * Store.DEADLINE_S + 3
API1 = f"{HOSTS['api1']['f']}:"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, observations):
    topology = Topology(tmp_path_factory.mktemp("deployment"),
                        ROOT / "models" / "champion" / "bundle")
    try:
        topology.build()
        topology.setup_load(request_body(observations))
        yield topology
    except BaseException:
        for name in ("api1", "api2", "nginx"):
            print(f"--- {name}\n{topology.output(name)}")
        raise
    finally:
        topology.close()


@pytest.fixture()
def body(observations) -> dict:
    return request_body(observations)


def summary(records: list[dict]) -> dict:
    statuses: dict[int, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    latencies = sorted(r["answered"] - r["sent"] for r in records)
    return {"requests": len(records), "answered_200": statuses.get(200, 0),
            "failed": len(records) - statuses.get(200, 0), "statuses": statuses,
            "slowest_s": round(latencies[-1], 2) if latencies else None}


def missing_predictions(deployment: Topology, records: list[dict]) -> list[str]:
    """Acknowledged predictions (200 answers carrying an id) not in the store."""
    acknowledged = {r["prediction_id"] for r in records if r["prediction_id"]}
    assert acknowledged, "no prediction was acknowledged"
    stored = set(deployment.sql("SELECT prediction_id FROM predictions"))
    return sorted(acknowledged - stored)


def finish_feed(deployment: Topology, feed, station_id: str, hours: int) -> str:
    output, _ = feed.communicate(timeout=120)
    assert feed.returncode == 0, output
    stored = int(deployment.sql(
        f"SELECT count(*) FROM observations WHERE station_id = '{station_id}'")[0])
    assert stored == hours, f"{stored} of {hours} fed hours are in the store:\n{output}"
    return output.strip().splitlines()[-1]


def wait_until_feeding(deployment: Topology, station_id: str, seconds: float = 60) -> None:
    """Return once the feeder's first hours are in the store (it takes a few seconds to
    start), so that the fault meets a feed in progress."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if int(deployment.sql("SELECT count(*) FROM observations WHERE station_id = "
                              f"'{station_id}'")[0]) >= 4:
            return
        time.sleep(0.3)
    raise AssertionError(f"the feeder sent nothing for {station_id} in {seconds} s")


def ensure_running(deployment: Topology) -> None:
    """Every API host up and the database cable in (an earlier scenario may have failed)."""
    for host in ("api1", "api2"):
        deployment.set_cable(host, "b", up=True)
        if host not in deployment.api or deployment.api[host].poll() is not None:
            deployment.start_api(host)
        deployment.wait_api(host)


def test_a_killed_api_host_is_routed_around(deployment, body):
    ensure_running(deployment)
    feed = deployment.start_feed("feed_kill", "2001-06-01", 80, 4)
    wait_until_feeding(deployment, "feed_kill")
    load, out = deployment.start_load(body, 20, "kill")
    time.sleep(6)
    killed_at = time.time()
    pids = deployment.kill_host("api1")
    killed_by = time.time()
    assert load.wait(timeout=60) == 0, deployment.output("kill-load")
    feed_line = finish_feed(deployment, feed, "feed_kill", 80)
    records = deployment.read_requests(out)
    after = [r for r in records if r["sent"] > killed_by]
    failed = [r for r in records if r["status"] != 200]
    numbers = {**summary(records), "processes_killed": len(pids),
               "failed_not_in_flight": [r for r in failed if not (
                   r["sent"] <= killed_by and r["answered"] >= killed_at)],
               "after_kill": summary(after),
               "answered_by_api1_after_kill": sum(1 for r in after if r["status"] == 200
                                                  and (r["upstream"] or "").split(", ")[-1]
                                                  .startswith(API1)),
               "rows_lost": len(missing_predictions(deployment, records)), "feed": feed_line}
    print(f"\nscenario kill -9 api1: {numbers}")
    assert len(pids) >= 3, pids  # the supervisor and its two workers
    assert numbers["failed_not_in_flight"] == [], "requests failed that were not in flight " \
                                                  "on the killed host"
    assert numbers["after_kill"]["failed"] == 0 and numbers["after_kill"]["requests"] > 0
    assert numbers["answered_by_api1_after_kill"] == 0
    assert numbers["rows_lost"] == 0
    assert 500 not in numbers["statuses"]
    deployment.start_api("api1")  # restored for the next scenario
    deployment.wait_api("api1")


def test_a_database_restart_is_answered_503_and_recovered(deployment, body):
    ensure_running(deployment)
    feed = deployment.start_feed("feed_restart", "2001-07-01", 80, 4)
    wait_until_feeding(deployment, "feed_restart")
    load, out = deployment.start_load(body, 20, "restart")
    time.sleep(5)
    down_at = time.time()
    deployment.db.stop("fast")
    time.sleep(3)
    deployment.db.start()
    up_at = time.time()
    assert load.wait(timeout=60) == 0, deployment.output("restart-load")
    feed_line = finish_feed(deployment, feed, "feed_restart", 80)
    records = deployment.read_requests(out)
    refused = [r for r in records if r["status"] != 200]
    last_refused = max((r["sent"] for r in refused), default=down_at)
    numbers = {**summary(records), "database_down_s": round(up_at - down_at, 2),
               "recovered_s_after_database_up": round(max(0.0, last_refused - up_at), 2),
               "refused_without_retry_after": sum(1 for r in refused if not r["retry_after"]),
               "refusal_types": sorted({str(r["type"]) for r in refused}),
               "rows_lost": len(missing_predictions(deployment, records)), "feed": feed_line}
    print(f"\nscenario PostgreSQL restart: {numbers}")
    assert refused, "the restart went unnoticed: was the database really stopped?"
    assert set(numbers["statuses"]) <= {200, 503}, numbers["statuses"]
    assert numbers["refused_without_retry_after"] == 0
    assert numbers["slowest_s"] < HANG_S, "a request hung past the deadline"
    assert numbers["recovered_s_after_database_up"] <= 10
    assert numbers["rows_lost"] == 0
    assert "retries" in feed_line and " 0 retries" not in feed_line, feed_line


def test_an_api_host_cut_from_the_database_answers_503_and_is_taken_out(deployment, body):
    ensure_running(deployment)
    load, out = deployment.start_load(body, 28, "cut")
    time.sleep(6)
    cut_at = time.time()
    deployment.set_cable("api1", "b", up=False)
    unhealthy = deployment.probe(f"{deployment.api_url('api1')}/healthz", 503, 20)
    unhealthy_after = time.time() - cut_at
    time.sleep(max(0.0, 12 - unhealthy_after))
    restored_at = time.time()
    deployment.set_cable("api1", "b", up=True)
    healthy = deployment.probe(f"{deployment.api_url('api1')}/healthz", 200, 20)
    assert load.wait(timeout=60) == 0, deployment.output("cut-load")
    records = deployment.read_requests(out)
    during = [r for r in records if cut_at <= r["sent"] < restored_at]
    refused = [r for r in records if r["status"] != 200]
    back = [r for r in records if r["sent"] >= restored_at and r["status"] == 200
            and (r["upstream"] or "").split(", ")[-1].startswith(API1)]
    numbers = {**summary(records), "during_cut": summary(during),
               "api1_healthz_503_after_s": round(unhealthy_after, 2),
               "reads_failed_during_cut": sum(1 for r in during if r["method"] == "GET"
                                              and r["status"] != 200),
               "refused_by_other_than_api1": sum(
                   1 for r in refused if not (r["upstream"] or "").startswith(API1)),
               "api1_back_after_s": round(back[0]["answered"] - restored_at, 2) if back
               else None,
               "rows_lost": len(missing_predictions(deployment, records))}
    print(f"\nscenario api1 cut from PostgreSQL: {numbers}")
    assert unhealthy, "api1's /healthz did not answer 503 while cut from the database"
    assert healthy, "api1's /healthz did not come back after the cable was restored"
    assert set(numbers["statuses"]) <= {200, 503}, numbers["statuses"]
    assert numbers["slowest_s"] < HANG_S, "a request hung past the deadline"
    assert numbers["reads_failed_during_cut"] == 0, "the balancer did not route reads around"
    assert numbers["refused_by_other_than_api1"] == 0
    assert numbers["api1_back_after_s"] is not None, "api1 did not come back"
    assert numbers["rows_lost"] == 0
