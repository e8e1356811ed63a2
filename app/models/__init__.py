"""ORM models, one module per table. Alembic imports this package to see all tables."""

from app.models.add_on import AddOn
from app.models.base import Base
from app.models.customer import Customer
from app.models.subscription_plan import SubscriptionPlan

__all__ = ["AddOn", "Base", "Customer", "SubscriptionPlan"]
