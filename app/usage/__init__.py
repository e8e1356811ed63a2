"""Call minutes and agents: metering, the quota check, overage and usage alerts."""
