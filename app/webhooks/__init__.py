"""Stripe's webhook: verified, stored, then processed in order by the worker."""
