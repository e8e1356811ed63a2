"""Operator alerts: what someone running the service must look at (a dispute, drift from
Stripe, a charge stuck on its way to Stripe). Owns the `operator_alerts` table."""
