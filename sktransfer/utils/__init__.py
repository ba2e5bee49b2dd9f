"""Utilities for developers of sktransfer estimators (contract checks)."""
