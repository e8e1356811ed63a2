"""Invoices: the PDF of each final Stripe invoice, rendered once from a template with the
customer's branding (white label) or the service's own, then stored and served unchanged."""
