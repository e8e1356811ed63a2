"""Billing history: what each customer was invoiced, paid and refunded, as Stripe reported it."""
