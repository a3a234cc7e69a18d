"""The vocabulary every room shares: the request, schedules, settings, errors and input limits (no torch)."""
