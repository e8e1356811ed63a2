"""Subscriptions and their items: creating, changing (with prorations and pending updates),
cancelling. A proration here is the whole difference of the item amounts (no time-based
proration).
"""

import copy
from typing import Any

from tests.stripe.fixtures import stripe_fixture
from tests.stripe.payments import FakePayments, item_amount, period_end
from tests.stripe.state import DAY, card_outcome
from tests.stripe.wire import (
    Params,
    StripeObject,
    as_bool,
    as_int,
    as_list,
    check_params,
    invalid_request,
    merge_metadata,
    resource_missing,
)

_PENDING_UPDATE_TTL = 23 * 3600

_CREATE_PARAMS = {
    "automatic_tax",
    "billing_mode",
    "cancel_at_period_end",
    "collection_method",
    "customer",
    "default_payment_method",
    "description",
    "expand",
    "items",
    "metadata",
    "off_session",
    "payment_behavior",
    "payment_settings",
    "pending_invoice_item_interval",
    "trial_end",
    "trial_period_days",
}
_UPDATE_PARAMS = {
    "cancel_at_period_end",
    "cancellation_details",
    "default_payment_method",
    "description",
    "expand",
    "items",
    "metadata",
    "off_session",
    "payment_behavior",
    "pending_invoice_item_interval",
    "proration_behavior",
    "proration_date",
}
_ITEM_PARAMS = {
    "expand",
    "metadata",
    "payment_behavior",
    "price",
    "proration_behavior",
    "proration_date",
    "quantity",
    "subscription",
}
_ITEM_SPEC_KEYS = {"id", "price", "quantity", "deleted", "metadata"}
# Stripe accepts only these with payment_behavior=pending_if_incomplete (the ones the fake models;
# metadata since 2026-05-27.dahlia).
_PENDING_PARAMS = {
    "expand",
    "items",
    "metadata",
    "payment_behavior",
    "price",
    "proration_behavior",
    "proration_date",
    "quantity",
    "subscription",
}


def _pending_interval(params: Params) -> StripeObject | None:
    """`pending_invoice_item_interval` as Stripe shows it (an empty value unsets it)."""
    interval = params.get("pending_invoice_item_interval") or None
    if interval is None:
        return None
    if interval.get("interval") not in ("day", "week", "month", "year"):
        raise invalid_request(
            "Invalid pending_invoice_item_interval[interval].",
            param="pending_invoice_item_interval[interval]",
        )
    return {
        "interval": interval["interval"],
        "interval_count": as_int(interval.get("interval_count"), 1),
    }


class FakeBilling(FakePayments):
    # --- look-ups ----------------------------------------------------------------------

    def subscription(self, subscription_id: Any, *, param: str = "id") -> StripeObject:
        if subscription_id not in self.subscriptions:
            status = 404 if param == "id" else 400
            raise resource_missing("subscription", str(subscription_id), param=param, status=status)
        return self.subscriptions[subscription_id]

    def _subscription_of_item(self, item_id: str) -> StripeObject:
        for subscription in self.subscriptions.values():
            if any(item["id"] == item_id for item in subscription["items"]["data"]):
                return subscription
        raise resource_missing("subscription_item", item_id)

    # --- builders ----------------------------------------------------------------------

    def _new_item(
        self, subscription_id: str, price: StripeObject, quantity: int, start: int, end: int
    ) -> StripeObject:
        item = stripe_fixture("subscription_item")
        item.update(
            id=self.new_id("si"),
            created=self.now,
            subscription=subscription_id,
            quantity=quantity,
            metadata={},
            billing_thresholds=None,
            current_period_start=start,
            current_period_end=end,
        )
        self._set_price(item, price)
        return item

    @staticmethod
    def _set_price(item: StripeObject, price: StripeObject) -> None:
        item["price"] = copy.deepcopy(price)
        recurring = price.get("recurring") or {}
        item["plan"].update(
            id=price["id"],
            active=price["active"],
            amount=price["unit_amount"],
            amount_decimal=price["unit_amount_decimal"],
            billing_scheme="per_unit",
            created=price["created"],
            currency=price["currency"],
            interval=recurring.get("interval"),
            interval_count=recurring.get("interval_count", 1),
            livemode=False,
            metadata=price["metadata"],
            product=price["product"],
            transform_usage=None,
        )

    # --- subscriptions -----------------------------------------------------------------

    def _create_subscription(self, params: Params) -> StripeObject:
        check_params(params, _CREATE_PARAMS, "POST /v1/subscriptions")
        customer = self.customer(params.get("customer"), param="customer", status=400)
        specs = as_list(params.get("items"))
        if not specs:
            raise invalid_request("Missing required param: items.", param="items")
        prices = [(self.price(spec.get("price"), param="items"), spec) for spec in specs]
        payment_method_id = params.get("default_payment_method") or None
        if payment_method_id:
            self.payment_method(payment_method_id, param="default_payment_method", status=400)

        subscription = stripe_fixture("subscription")
        identifier = self.new_id("sub")
        trial_days = as_int(params.get("trial_period_days"), 0) or 0
        trial_end = self.now + trial_days * DAY if trial_days else as_int(params.get("trial_end"))
        billing_mode = (params.get("billing_mode") or {}).get("type", "classic")
        save_default = (params.get("payment_settings") or {}).get("save_default_payment_method")
        subscription.update(
            id=identifier,
            customer=customer["id"],
            created=self.now,
            start_date=self.now,
            billing_cycle_anchor=trial_end or self.now,
            billing_cycle_anchor_config=None,
            billing_mode={
                "type": billing_mode,
                "flexible": {} if billing_mode == "flexible" else None,
            },
            billing_schedules=[],
            billing_thresholds=None,
            cancel_at=None,
            cancel_at_period_end=as_bool(params.get("cancel_at_period_end")),
            canceled_at=None,
            ended_at=None,
            currency=prices[0][0]["currency"],
            default_payment_method=payment_method_id,
            description=params.get("description"),
            discounts=[],
            latest_invoice=None,
            managed_payments={"enabled": False},
            metadata=dict(params.get("metadata") or {}),
            pause_collection=None,
            pending_setup_intent=None,
            pending_update=None,
            schedule=None,
            status="incomplete",
            transfer_data=None,
            trial_start=self.now if trial_end else None,
            trial_end=trial_end,
        )
        subscription["automatic_tax"]["enabled"] = as_bool(
            (params.get("automatic_tax") or {}).get("enabled")
        )
        subscription["cancellation_details"] = {"comment": None, "feedback": None, "reason": None}
        self._set_pending_interval(subscription, params)
        subscription["payment_settings"]["save_default_payment_method"] = save_default
        items = []
        for price, spec in prices:
            interval = price["recurring"]["interval"]
            end = trial_end or period_end(self.now, interval)
            quantity = as_int(spec.get("quantity"), 1) or 0
            items.append(self._new_item(identifier, price, quantity, self.now, end))
        subscription["items"] = {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={identifier}",
        }
        self.subscriptions[identifier] = subscription

        card = self._charge_card(subscription)
        if trial_end:
            # A trial starts with a paid $0 invoice; a card that needs SCA is set up instead.
            subscription["status"] = "trialing"
            lines = [
                self._line(item, 0, proration=False, start=self.now, end=trial_end)
                for item in items
            ]
            subscription["latest_invoice"] = self._open_invoice(
                subscription, lines, "subscription_create"
            )["id"]
            if card and card_outcome(card)[0] == "requires_action":
                setup_intent = self.new_setup_intent(
                    customer=customer["id"], payment_method=card, status="requires_action"
                )
                subscription["pending_setup_intent"] = setup_intent["id"]
            return subscription

        lines = [
            self._line(
                item,
                item_amount(item),
                proration=False,
                start=item["current_period_start"],
                end=item["current_period_end"],
            )
            for item in items
        ]
        invoice = self._open_invoice(subscription, lines, "subscription_create")
        subscription["latest_invoice"] = invoice["id"]
        behaviour = params.get("payment_behavior", "allow_incomplete")
        if behaviour != "default_incomplete":
            self._attempt(invoice, card)
        if invoice["status"] == "paid":
            subscription["status"] = "active"
        elif behaviour == "error_if_incomplete":
            invoice["status"] = "void"
            del self.subscriptions[identifier]
            raise self._payment_error(invoice)
        return subscription

    def _list_subscriptions(self, params: Params) -> list[StripeObject]:
        status = params.get("status")
        found = []
        for subscription in reversed(self.subscriptions.values()):
            if params.get("customer") and subscription["customer"] != params["customer"]:
                continue
            if status in (None, "") and subscription["status"] == "canceled":
                continue
            if status not in (None, "", "all") and subscription["status"] != status:
                continue
            found.append(subscription)
        return found

    def _update_subscription(self, params: Params, subscription_id: str) -> StripeObject:
        endpoint = "POST /v1/subscriptions/{id}"
        check_params(params, _UPDATE_PARAMS, endpoint)
        subscription = self.subscription(subscription_id)
        if subscription["status"] in ("canceled", "incomplete_expired") and set(params) - {
            "metadata",
            "cancellation_details",
            "expand",
        }:
            raise invalid_request(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        pending = params.get("payment_behavior") == "pending_if_incomplete"
        if pending:
            check_params(params, _PENDING_PARAMS, f"{endpoint} with pending_if_incomplete")
        if "default_payment_method" in params:
            identifier = params["default_payment_method"] or None
            if identifier:
                self.payment_method(identifier, param="default_payment_method", status=400)
            subscription["default_payment_method"] = identifier
        if "pending_invoice_item_interval" in params:
            self._set_pending_interval(subscription, params)
        if "cancel_at_period_end" in params:
            at_end = as_bool(params["cancel_at_period_end"])
            subscription["cancel_at_period_end"] = at_end
            ends = [item["current_period_end"] for item in subscription["items"]["data"]]
            subscription["cancel_at"] = max(ends) if at_end and ends else None
        applied = True
        if "items" in params:
            desired = self._desired_items(subscription, as_list(params["items"]), "items")
            applied = self._change_items(subscription, desired, params)
        if "metadata" in params and applied:  # else it waits in `pending_update`
            subscription["metadata"] = merge_metadata(subscription["metadata"], params["metadata"])
        return subscription

    def _cancel_subscription(self, params: Params, subscription_id: str) -> StripeObject:
        subscription = self.subscription(subscription_id)
        if subscription["status"] != "canceled":
            subscription.update(
                status="canceled", canceled_at=self.now, ended_at=self.now, pending_update=None
            )
            subscription["cancellation_details"]["reason"] = "cancellation_requested"
            self._pending.pop(subscription["id"], None)
            schedule = self.schedules.get(subscription.get("schedule") or "")
            if schedule is not None and schedule["status"] in ("active", "not_started"):
                schedule.update(status="canceled", canceled_at=self.now)
        return subscription

    def _set_pending_interval(self, subscription: StripeObject, params: Params) -> None:
        """The interval, and when Stripe will next invoice the pending items (an interval
        from now; none without an interval)."""
        interval = _pending_interval(params)
        subscription["pending_invoice_item_interval"] = interval
        subscription["next_pending_invoice_item_invoice"] = (
            period_end(self.now, interval["interval"], interval["interval_count"])
            if interval
            else None
        )

    # --- item changes ------------------------------------------------------------------

    def _desired_items(
        self, subscription: StripeObject, specs: list[Any], param: str
    ) -> list[StripeObject]:
        """The subscription's items after these changes (`{id, price?, quantity?, deleted?}`
        changes an item, `{price, quantity}` adds one); the subscription is not touched."""
        desired: list[StripeObject] = copy.deepcopy(subscription["items"]["data"])
        anchor = desired[0] if desired else None
        for index, spec in enumerate(specs):
            where = f"{param}[{index}]"
            check_params(spec, _ITEM_SPEC_KEYS, f"{where} of a subscription update")
            if spec.get("id"):
                item = next((item for item in desired if item["id"] == spec["id"]), None)
                if item is None:
                    raise resource_missing(
                        "subscription item", spec["id"], param=f"{where}[id]", status=400
                    )
                if as_bool(spec.get("deleted")):
                    desired.remove(item)
                    continue
                if spec.get("price"):
                    price = self.price(spec["price"], param=f"{where}[price]")
                    if price["recurring"]["interval"] != item["price"]["recurring"]["interval"]:
                        # A new interval restarts the billing cycle now.
                        item["current_period_start"] = self.now
                        item["current_period_end"] = period_end(
                            self.now, price["recurring"]["interval"]
                        )
                    self._set_price(item, price)
            else:
                price = self.price(spec.get("price"), param=f"{where}[price]")
                interval = price["recurring"]["interval"]
                if anchor is not None and anchor["price"]["recurring"]["interval"] == interval:
                    start, end = anchor["current_period_start"], anchor["current_period_end"]
                else:
                    start, end = self.now, period_end(self.now, interval)
                item = self._new_item(subscription["id"], price, 1, start, end)
                desired.append(item)
            if "quantity" in spec:
                item["quantity"] = as_int(spec["quantity"], 1)
            if "metadata" in spec:
                item["metadata"] = merge_metadata(item["metadata"], spec["metadata"])
        if not desired:
            raise invalid_request("A subscription must have at least one active item.", param=param)
        if len({item["price"]["recurring"]["interval"] for item in desired}) > 1:
            # Stripe's own refusal: every item of a subscription bills on one interval.
            raise invalid_request(
                "Currency and interval fields must match across all plans on this "
                "subscription. Found mismatch in interval field.",
                param=param,
            )
        return desired

    @staticmethod
    def _differences(
        current: list[StripeObject], desired: list[StripeObject]
    ) -> list[tuple[StripeObject, int]]:
        """(item, amount after - amount before) of each item whose amount changes."""
        before = {item["id"]: item for item in current}
        changes = []
        for item in desired:
            old = before.pop(item["id"], None)
            difference = item_amount(item) - (item_amount(old) if old else 0)
            if difference:
                changes.append((item, difference))
        changes.extend((old, -item_amount(old)) for old in before.values())
        return changes

    def _change_items(
        self, subscription: StripeObject, desired: list[StripeObject], params: Params
    ) -> bool:
        """Apply `desired` as the subscription's items, invoicing the difference now when
        `proration_behavior=always_invoice`. Returns whether the change was applied."""
        changes = self._differences(subscription["items"]["data"], desired)
        amount = sum(difference for _, difference in changes)
        if params.get("proration_behavior") != "always_invoice" or amount <= 0:
            self._apply_items(subscription, desired)
            return True
        proration_date = as_int(params.get("proration_date"), self.now) or self.now
        before = {item["id"]: item for item in subscription["items"]["data"]}
        lines = []
        for item, difference in changes:
            old = before.get(item["id"])
            if old is not None and (
                old["price"]["recurring"]["interval"] != item["price"]["recurring"]["interval"]
            ):
                # A new interval starts a new period now: the new price in full (not a
                # proration) and the unused old one credited.
                lines.append(
                    self._line(
                        item,
                        item_amount(item),
                        proration=False,
                        start=item["current_period_start"],
                        end=item["current_period_end"],
                    )
                )
                lines.append(
                    self._line(
                        old,
                        -item_amount(old),
                        proration=True,
                        start=proration_date,
                        end=old["current_period_end"],
                    )
                )
                continue
            lines.append(
                self._line(
                    item,
                    difference,
                    proration=True,
                    start=proration_date,
                    end=item["current_period_end"],
                )
            )
        invoice = self._open_invoice(subscription, lines, "subscription_update")
        subscription["latest_invoice"] = invoice["id"]
        behaviour = params.get("payment_behavior", "allow_incomplete")
        if self._attempt(invoice, self._charge_card(subscription)) == "succeeded":
            self._apply_items(subscription, desired)
            return True
        if behaviour == "pending_if_incomplete":
            metadata = dict(params.get("metadata") or {})
            self._pending[subscription["id"]] = (invoice["id"], desired, metadata)
            pending_update = stripe_fixture("subscription")["pending_update"]
            pending_update.update(
                discount=None,
                discounts=None,
                expires_at=self.now + _PENDING_UPDATE_TTL,
                subscription_items=copy.deepcopy(desired),
                metadata=metadata or None,
            )
            subscription["pending_update"] = pending_update
            return False
        if behaviour == "error_if_incomplete":
            invoice["status"] = "void"
            raise self._payment_error(invoice)
        self._apply_items(subscription, desired)
        subscription["status"] = "past_due"
        return True

    def _create_item(self, params: Params) -> StripeObject:
        check_params(params, _ITEM_PARAMS, "POST /v1/subscription_items")
        subscription = self.subscription(params.get("subscription"), param="subscription")
        spec = {key: params[key] for key in ("price", "quantity", "metadata") if key in params}
        desired = self._desired_items(subscription, [spec], "items")
        self._change_items(subscription, desired, params)
        return desired[-1]

    def _update_item(self, params: Params, item_id: str) -> StripeObject:
        check_params(params, _ITEM_PARAMS - {"subscription"}, "POST /v1/subscription_items/{id}")
        subscription = self._subscription_of_item(item_id)
        spec = {key: params[key] for key in ("price", "quantity", "metadata") if key in params}
        desired = self._desired_items(subscription, [{"id": item_id, **spec}], "items")
        self._change_items(subscription, desired, params)
        return next(item for item in desired if item["id"] == item_id)

    def _delete_item(self, params: Params, item_id: str) -> StripeObject:
        check_params(params, {"proration_behavior", "proration_date"}, "DELETE subscription_item")
        subscription = self._subscription_of_item(item_id)
        desired = self._desired_items(subscription, [{"id": item_id, "deleted": "true"}], "id")
        self._change_items(subscription, desired, params)
        return {"id": item_id, "object": "subscription_item", "deleted": True}
