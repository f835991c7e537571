"""The job ledger (rows leased by workers) and the worker process."""
