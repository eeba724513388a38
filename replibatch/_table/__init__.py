"""Frames and jobs: planning a DataFrame into jobs, checking inputs, and turning results back into columns."""
