"""A run: the plan (what is cached, what runs and why), the loop that schedules stages, and the sites they run at."""
