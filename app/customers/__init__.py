"""Billing accounts: one per dashboard user."""
