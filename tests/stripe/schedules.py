"""Subscription schedules (changes at a period end) and invoice previews of a change."""

from typing import Any

from tests.stripe.billing import FakeBilling
from tests.stripe.fixtures import stripe_fixture
from tests.stripe.payments import item_amount, period_end
from tests.stripe.wire import (
    Params,
    StripeObject,
    as_int,
    as_list,
    check_params,
    invalid_request,
    resource_missing,
)

_SCHEDULE_UPDATE_PARAMS = {"end_behavior", "expand", "metadata", "phases", "proration_behavior"}
_PHASE_KEYS = {"duration", "end_date", "items", "metadata", "proration_behavior", "start_date"}
_PREVIEW_PARAMS = {"customer", "expand", "subscription", "subscription_details"}
_PREVIEW_DETAILS = {"items", "proration_behavior", "proration_date"}


class FakeSchedules(FakeBilling):
    def schedule(self, schedule_id: str) -> StripeObject:
        if schedule_id not in self.schedules:
            raise resource_missing("subscription_schedule", schedule_id)
        return self.schedules[schedule_id]

    def _phase(
        self, start: int, end: int | None, items: list[tuple[str, int]], proration: str
    ) -> StripeObject:
        phase: StripeObject = stripe_fixture("subscription_schedule")["phases"][0]
        template = phase["items"][0]
        phase_items = []
        for price, quantity in items:
            item = dict(template, price=price, plan=price, quantity=quantity)
            item.update(metadata={}, billing_thresholds=None)
            phase_items.append(item)
        phase.update(
            start_date=start,
            end_date=end,
            items=phase_items,
            currency=self.prices[items[0][0]]["currency"] if items else "usd",
            proration_behavior=proration,
            transfer_data=None,
            billing_thresholds=None,
            invoice_settings=None,
            metadata={},
        )
        return phase

    def _create_schedule(self, params: Params) -> StripeObject:
        check_params(params, {"from_subscription", "expand"}, "POST /v1/subscription_schedules")
        subscription = self.subscription(params.get("from_subscription"), param="from_subscription")
        if subscription.get("schedule"):
            raise invalid_request(
                "You cannot migrate a subscription that is already attached to a schedule: "
                f"`{subscription['schedule']}`.",
                param="from_subscription",
            )
        items = subscription["items"]["data"]
        start = min(item["current_period_start"] for item in items)
        end = max(item["current_period_end"] for item in items)
        phase = self._phase(
            start,
            end,
            [(item["price"]["id"], int(item["quantity"])) for item in items],
            "create_prorations",
        )
        schedule = stripe_fixture("subscription_schedule")
        identifier = self.new_id("sub_sched")
        schedule.update(
            id=identifier,
            created=self.now,
            customer=subscription["customer"],
            subscription=subscription["id"],
            status="active",
            phases=[phase],
            current_phase={"start_date": start, "end_date": end},
            end_behavior="release",
            canceled_at=None,
            completed_at=None,
            released_at=None,
            released_subscription=None,
            billing_mode=dict(subscription["billing_mode"]),
            metadata={},
        )
        schedule["default_settings"]["transfer_data"] = None
        self.schedules[identifier] = schedule
        subscription["schedule"] = identifier
        return schedule

    def _update_schedule(self, params: Params, schedule_id: str) -> StripeObject:
        check_params(params, _SCHEDULE_UPDATE_PARAMS, "POST /v1/subscription_schedules/{id}")
        schedule = self.schedule(schedule_id)
        if schedule["status"] not in ("active", "not_started"):
            raise invalid_request(
                "You cannot update a subscription schedule that is currently in the "
                f"`{schedule['status']}` status."
            )
        if "phases" in params:
            schedule["phases"] = self._phases(schedule, as_list(params["phases"]), params)
            first = schedule["phases"][0]
            schedule["current_phase"] = {
                "start_date": first["start_date"],
                "end_date": first["end_date"],
            }
        if "end_behavior" in params:
            schedule["end_behavior"] = params["end_behavior"]
        if "metadata" in params:
            schedule["metadata"] = dict(params["metadata"] or {})
        return schedule

    def _phases(
        self, schedule: StripeObject, specs: list[Any], params: Params
    ) -> list[StripeObject]:
        phases: list[StripeObject] = []
        current_start = schedule["current_phase"]["start_date"]
        for index, spec in enumerate(specs):
            where = f"phases[{index}]"
            check_params(spec, _PHASE_KEYS, f"{where} of a schedule update")
            items = []
            for item_index, item in enumerate(as_list(spec.get("items"))):
                param = f"{where}[items][{item_index}][price]"
                price = self.price(item.get("price"), param=param)
                items.append((str(price["id"]), as_int(item.get("quantity"), 1) or 1))
            if not items:
                raise invalid_request("Missing required param: items.", param=f"{where}[items]")
            if index == 0:
                start = self._timestamp(spec.get("start_date"), current_start)
                if schedule["status"] == "active" and start != current_start:
                    raise invalid_request(
                        "You can not modify the start date of the current phase.",
                        param=f"{where}[start_date]",
                    )
            else:
                previous_end = phases[-1]["end_date"]
                start = self._timestamp(spec.get("start_date"), previous_end)
                if start != previous_end:
                    raise invalid_request(
                        "The start date of a phase must equal the end date of the previous one.",
                        param=f"{where}[start_date]",
                    )
            duration = spec.get("duration")
            if spec.get("end_date") not in (None, ""):
                end = self._timestamp(spec["end_date"], start)
            elif duration:
                count = as_int(duration.get("interval_count"), 1) or 1
                end = period_end(start, duration["interval"], count)
            else:  # one iteration of the phase's price
                end = period_end(start, self.prices[items[0][0]]["recurring"]["interval"])
            if end <= start:
                raise invalid_request(
                    "The phase's end_date must be after its start_date.",
                    param=f"{where}[end_date]",
                )
            proration = spec.get("proration_behavior") or params.get(
                "proration_behavior", "create_prorations"
            )
            phases.append(self._phase(start, end, items, proration))
        if not phases:
            raise invalid_request("Missing required param: phases.", param="phases")
        return phases

    def _timestamp(self, value: Any, default: int) -> int:
        if value in (None, ""):
            return default
        return self.now if value == "now" else int(value)

    def _release_schedule(self, params: Params, schedule_id: str) -> StripeObject:
        schedule = self.schedule(schedule_id)
        if schedule["status"] not in ("active", "not_started"):
            raise invalid_request(
                "You cannot release a subscription schedule that is currently in the "
                f"`{schedule['status']}` status."
            )
        subscription = self.subscriptions.get(schedule["subscription"])
        if subscription is not None:
            subscription["schedule"] = None
        schedule.update(
            status="released",
            released_at=self.now,
            released_subscription=schedule["subscription"],
            subscription=None,
        )
        return schedule

    # --- previews ----------------------------------------------------------------------

    def _create_preview(self, params: Params) -> StripeObject:
        """The next invoice if the subscription changed as described: one proration line per
        changed item (the whole difference), then each item at its new price."""
        check_params(params, _PREVIEW_PARAMS, "POST /v1/invoices/create_preview")
        subscription = self.subscription(params.get("subscription"), param="subscription")
        if params.get("customer") and params["customer"] != subscription["customer"]:
            raise invalid_request(
                "The subscription does not belong to this customer.", param="customer"
            )
        details = params.get("subscription_details") or {}
        check_params(details, _PREVIEW_DETAILS, "subscription_details of create_preview")
        specs = as_list(details.get("items"))
        desired = self._desired_items(subscription, specs, "subscription_details[items]")
        current_end = max(item["current_period_end"] for item in subscription["items"]["data"])
        proration_date = as_int(details.get("proration_date"), self.now) or self.now
        lines = []
        if details.get("proration_behavior", "create_prorations") != "none":
            lines = [
                self._line(
                    item,
                    difference,
                    proration=True,
                    start=proration_date,
                    end=item["current_period_end"],
                )
                for item, difference in self._differences(subscription["items"]["data"], desired)
            ]
        for item in desired:
            interval = item["price"]["recurring"]["interval"]
            lines.append(
                self._line(
                    item,
                    item_amount(item),
                    proration=False,
                    start=current_end,
                    end=period_end(current_end, interval),
                )
            )
        preview = self._invoice_object(subscription, lines, "upcoming")
        preview.update(
            id=f"upcoming_{preview['id']}",
            status="draft",
            number=None,
            period_start=min(item["current_period_start"] for item in desired),
            period_end=current_end,
            next_payment_attempt=current_end,
            auto_advance=False,
        )
        for line in lines:
            line["invoice"] = preview["id"]
        return preview
