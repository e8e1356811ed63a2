"""What every arq job shares: its typed context, its transaction, and how work is enqueued
by name. Sits above the gateway and below every domain, so a domain can ask for a job of a
higher one by name (after its commit) without importing it."""
