"""The one HTTP boundary between replibatch and Replicate's API."""
