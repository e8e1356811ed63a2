"""An in-memory fake of Stripe's HTTP API for tests (`FakeStripe`, mounted by `plugin.py`)."""
