"""ORM models, one module per table. Alembic imports this package to see all tables."""

from app.models.add_on import AddOn
from app.models.base import Base
from app.models.billing_history import BillingHistory, BillingHistoryArchive
from app.models.console import ConsoleAuditEntry, ConsoleSignInLink
from app.models.customer import Customer
from app.models.customer_branding import CustomerBranding
from app.models.idempotency_key import IdempotencyKey
from app.models.invoice_document import InvoiceDocument
from app.models.notification import Notification
from app.models.notification_delivery import NotificationDelivery
from app.models.operator_alert import OperatorAlert
from app.models.payment_method import PaymentMethod
from app.models.payment_retry import PaymentRetry
from app.models.stripe_event import StripeEvent, StripeObjectWatermark
from app.models.subscription import Subscription
from app.models.subscription_add_on import SubscriptionAddOn
from app.models.subscription_plan import SubscriptionPlan
from app.models.subscription_plan_change import SubscriptionPlanChange
from app.models.subscription_terms_history import SubscriptionAddOnChange, SubscriptionAnchorChange
from app.models.usage import (
    OverageCharge,
    UsageAlert,
    UsageDailyTotals,
    UsagePeriodTotals,
    UsageRecord,
)

__all__ = [
    "AddOn",
    "Base",
    "BillingHistory",
    "BillingHistoryArchive",
    "ConsoleAuditEntry",
    "ConsoleSignInLink",
    "Customer",
    "CustomerBranding",
    "IdempotencyKey",
    "InvoiceDocument",
    "Notification",
    "NotificationDelivery",
    "OperatorAlert",
    "OverageCharge",
    "PaymentMethod",
    "PaymentRetry",
    "StripeEvent",
    "StripeObjectWatermark",
    "Subscription",
    "SubscriptionAddOn",
    "SubscriptionAddOnChange",
    "SubscriptionAnchorChange",
    "SubscriptionPlan",
    "SubscriptionPlanChange",
    "UsageAlert",
    "UsageDailyTotals",
    "UsagePeriodTotals",
    "UsageRecord",
]
