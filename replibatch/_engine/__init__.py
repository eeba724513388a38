"""The engine: scheduling predictions under the account's limits, creating, reconciling, polling, stopping."""
