"""ORM models, one module per table. Alembic imports this package to see all tables."""

from app.models.add_on import AddOn
from app.models.base import Base
from app.models.customer import Customer
from app.models.idempotency_key import IdempotencyKey
from app.models.payment_method import PaymentMethod
from app.models.subscription import Subscription
from app.models.subscription_add_on import SubscriptionAddOn
from app.models.subscription_plan import SubscriptionPlan

__all__ = [
    "AddOn",
    "Base",
    "Customer",
    "IdempotencyKey",
    "PaymentMethod",
    "Subscription",
    "SubscriptionAddOn",
    "SubscriptionPlan",
]
