"""Tests of app/stripe_gateway against tests/stripe/FakeStripe."""
