"""Replay-safety tests: recorded LongRunningJob histories replayed against the current workflow code."""
