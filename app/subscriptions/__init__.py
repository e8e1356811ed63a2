"""A customer's subscription: subscribe, change, cancel, and the add-ons it carries."""
