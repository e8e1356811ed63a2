"""A customer's cards: the local mirror of Stripe's payment methods."""
