"""Notifications: the outbox of messages to customers (email, the dashboard's webhook).
Owns the `notifications` table; a notification is written in the same transaction as the
fact it reports, so a rollback sends nothing and a crash loses nothing."""
