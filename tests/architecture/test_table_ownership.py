"""Each table is written and queried only by its owning domain's repository (README,
"Layout"). The import contracts (`lint-imports`, run by `make test`) keep the layers; this
keeps the tables: any `select`, `insert`, `update`, `delete` or `session.get` naming a model
outside the modules allowed for it fails here, with the place.

Raw SQL (`text(...)`) is not seen by this check; the usage repository's hot paths are the
only raw SQL and stay inside it.
"""

import ast
from pathlib import Path

import app.models as models

APP = Path(__file__).resolve().parents[2] / "app"

OWNERS: dict[str, str] = {
    "Customer": "app.customers.repository",
    "CustomerBranding": "app.invoices.repository",
    "InvoiceDocument": "app.invoices.repository",
    "SubscriptionPlan": "app.plans.repository",
    "AddOn": "app.plans.repository",
    "Subscription": "app.subscriptions.repository",
    "SubscriptionAddOn": "app.subscriptions.repository",
    "SubscriptionPlanChange": "app.subscriptions.repository",
    "SubscriptionAnchorChange": "app.subscriptions.repository",
    "SubscriptionAddOnChange": "app.subscriptions.repository",
    "PaymentRetry": "app.subscriptions.repository",
    "PaymentMethod": "app.payment_methods.repository",
    "UsageRecord": "app.usage.repository",
    "UsagePeriodTotals": "app.usage.repository",
    "UsageDailyTotals": "app.usage.repository",
    "OverageCharge": "app.usage.overage_billing.repository",
    "UsageAlert": "app.alerts.repository",
    "BillingHistory": "app.billing_history.repository",
    "BillingHistoryArchive": "app.billing_history.repository",
    "StripeEvent": "app.webhooks.repository",
    "StripeObjectWatermark": "app.webhooks.repository",
    "IdempotencyKey": "app.idempotency.repository",
    "Notification": "app.notifications.repository",
    "NotificationDelivery": "app.notifications.repository",
    "OperatorAlert": "app.operator_alerts.repository",
    "ConsoleAuditEntry": "app.console.repository",
    "ConsoleSignInLink": "app.console.repository",
}

# The reads outside an owner that are on purpose (each listed in the README with its reason).
READ_MODELS: dict[str, set[str]] = {
    # The quota check and the summary: one indexed statement joining what they need.
    "app.usage.read_models": {"Subscription", "UsageDailyTotals"},
    # Overage closes and sweeps are part of the usage domain; they join the subscription to
    # find what is due, and read the usage counters they close.
    "app.usage.overage_billing.repository": {
        "Subscription",
        "UsageRecord",
        "UsagePeriodTotals",
        "UsageDailyTotals",
    },
    # Whether a card is the last one a live subscription needs, and the customer row a
    # default-card change serializes on: payment methods sit below subscriptions.
    "app.payment_methods.repository": {"Subscription", "Customer"},
}

STATEMENTS = {"select", "insert", "update", "delete"}


def _module_name(path: Path) -> str:
    relative = path.relative_to(APP.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _models_named(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in OWNERS:
            names.add(child.id)
    return names


def _statement_models(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, model) of every statement or session.get naming a model."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        name = (
            function.id
            if isinstance(function, ast.Name)
            else function.attr
            if isinstance(function, ast.Attribute)
            else None
        )
        is_statement = isinstance(function, ast.Name) and name in STATEMENTS
        is_session_get = (
            isinstance(function, ast.Attribute)
            and name in ("get", "delete")
            and isinstance(function.value, ast.Name)
            and function.value.id == "session"
        )
        if not (is_statement or is_session_get):
            continue
        for argument in node.args:
            for model in _models_named(argument):
                found.append((node.lineno, model))
    return found


def test_every_model_is_in_the_ownership_map() -> None:
    assert set(OWNERS) == {name for name in models.__all__ if name != "Base"}


def test_tables_are_queried_only_by_their_owning_repository() -> None:
    misplaced: list[str] = []
    for path in sorted(APP.rglob("*.py")):
        module = _module_name(path)
        if module.startswith("app.models"):
            continue
        for line, model in _statement_models(ast.parse(path.read_text())):
            if module == OWNERS[model] or model in READ_MODELS.get(module, set()):
                continue
            misplaced.append(f"{module}:{line} queries {model} (owned by {OWNERS[model]})")
    assert misplaced == []


def _domain(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_imports_another_domains_repository() -> None:
    """Domains call each other through the other domain's service, never its repository."""
    crossing: list[str] = []
    for path in sorted(APP.rglob("*.py")):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.endswith(".repository") and _domain(target) != _domain(module):
                    crossing.append(f"{module}:{node.lineno} imports {target}")
    assert crossing == []
