"""Deciding between outputs: scores, judges, human ratings, leaderboards and diffs."""
