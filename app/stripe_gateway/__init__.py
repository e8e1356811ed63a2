"""The only package that talks to Stripe. Everything else sees `StripeGateway` and our types."""
