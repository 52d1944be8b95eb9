"""The night planner: the place (time zone, climatology), the sun-and-moon timeline and
its windows, and the night plan as the API returns it."""
