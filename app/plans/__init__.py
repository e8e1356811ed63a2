"""The catalog: subscription plans and add-ons."""
