"""Window changes between two night plans (the server-side nudge decision)."""

from starry_guide.serve.events import window_changes


def w(start: str, end: str, p: float = 0.8) -> dict:
    return {"start": f"2026-11-28T{start}:00Z", "end": f"2026-11-28T{end}:00Z",
            "mean_p_clear": p}


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
