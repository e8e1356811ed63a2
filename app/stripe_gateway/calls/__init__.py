"""`StripeGateway`'s calls, one module per group of Stripe resources (see `client.py`)."""
