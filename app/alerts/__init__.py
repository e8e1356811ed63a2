"""Usage and payment alerts: the rows the dashboard lists and acknowledges (and that the
notifications work will deliver by email and webhook)."""
