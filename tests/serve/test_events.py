"""Window changes between two night plans (the server-side nudge decision)."""

import datetime as dt

from starry_guide.serve.routes.events import counts, window_changes


def w(start: str, end: str, p: float = 0.8, nowcast: int = 60) -> dict:
    """A best window of 28/29 November; ``nowcast``: its minutes the nowcast covers."""
    day = "2026-11-28" if start < "12:00" else "2026-11-27"
    last = "2026-11-28" if end <= "12:00" else "2026-11-27"
    return {"start": f"{day}T{start}:00Z", "end": f"{last}T{end}:00Z", "mean_p_clear": p,
            "nowcast_minutes": nowcast}


def test_a_clear_window_that_overlaps_no_clear_window_before_has_opened():
    opened, closed = window_changes([w("01:00", "02:00")], [w("01:30", "02:30"),
                                                            w("04:00", "05:00")])
    assert opened == [w("04:00", "05:00")] and closed == []


def test_a_window_that_turned_clear_has_opened_and_one_that_clouded_over_closed():
    opened, closed = window_changes([w("01:00", "02:00", 0.3)], [w("01:15", "02:00", 0.8)])
    assert opened == [w("01:15", "02:00", 0.8)] and closed == []
    opened, closed = window_changes([w("01:15", "02:00", 0.8)], [w("01:00", "02:00", 0.3)])
    assert opened == [] and closed == [w("01:15", "02:00", 0.8)]


def test_a_window_that_overlaps_nothing_after_has_closed():
    opened, closed = window_changes([w("01:00", "02:00"), w("04:00", "05:00")],
                                    [w("04:15", "04:45")])
    assert opened == [] and closed == [w("01:00", "02:00")]


def test_touching_windows_do_not_overlap_and_nothing_changes_for_equal_plans():
    assert window_changes([w("01:00", "02:00")], [w("02:00", "03:00")]) == \
        ([w("02:00", "03:00")], [w("01:00", "02:00")])
    plan = [w("01:00", "02:00"), w("03:00", "04:00")]
    assert window_changes(plan, plan) == ([], [])
    assert window_changes([], plan) == (plan, [])


# ------------------------------------------------- climatology alone is not a clear window
def test_only_a_clear_window_the_nowcast_covers_counts():
    assert counts(w("01:00", "02:00", 0.8, nowcast=15))
    assert not counts(w("01:00", "02:00", 0.8, nowcast=0))  # climatology alone
    assert not counts(w("01:00", "02:00", 0.49, nowcast=60))  # not clear enough
    assert counts(w("01:00", "02:00", 0.5, nowcast=60))  # the go/no-go threshold


def test_a_climatology_window_before_does_not_hide_the_window_the_nowcast_opens():
    """The case that hid the nudge: a clear climatology window beyond the nowcast's reach
    (after moonset) in the plan before; the nowcast then makes the whole night clear."""
    climatology = w("04:05", "10:50", 0.571, nowcast=0)
    cloudy = w("23:35", "01:00", 0.2, nowcast=85)
    clear = w("23:35", "11:05", 0.896, nowcast=615)
    opened, closed = window_changes([climatology, cloudy], [clear])
    assert opened == [clear] and closed == []


def test_a_climatology_window_neither_opens_nor_closes():
    climatology = w("04:05", "10:50", 0.571, nowcast=0)
    assert window_changes([], [climatology]) == ([], [])
    assert window_changes([climatology], []) == ([], [])
    # a clear window the new plan has from climatology alone is no longer backed: closed
    assert window_changes([w("04:05", "10:50", 0.7, nowcast=60)], [climatology]) == \
        ([], [w("04:05", "10:50", 0.7, nowcast=60)])
    # the nowcast reaching a clear climatology window and keeping it clear opens it
    backed = w("04:05", "10:50", 0.65, nowcast=120)
    assert window_changes([climatology], [backed]) == ([backed], [])


def test_windows_over_by_since_are_not_reported():
    over = w("23:35", "01:00", 0.9, nowcast=60)
    ahead = w("03:00", "05:00", 0.9, nowcast=60)
    since = "2026-11-28T01:00:00Z"  # the new nowcast's first hour: `over` has ended
    assert window_changes([over], [], since=since) == ([], [])
    assert window_changes([], [over, ahead], since=since) == ([ahead], [])
    assert window_changes([ahead], [], since=dt.datetime(2026, 11, 28, 1, tzinfo=dt.UTC)) == \
        ([], [ahead])
    # an hour of a window still ahead is enough to report it
    assert window_changes([over], [], since="2026-11-28T00:45:00+00:00") == ([], [over])
