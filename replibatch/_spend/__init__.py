"""Money: prices, what a prediction costs, budgets, and the spend ledger across runs."""
