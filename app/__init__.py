"""Billing service for the call-center dashboard."""
