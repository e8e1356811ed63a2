"""The operator console at /admin/ (README, "Operator console"): sqladmin's read-only views of
the tables, with actions that call the same services as the admin API, each audited."""
