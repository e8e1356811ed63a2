import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.usage.ingestion import request_fingerprint
from app.usage.schemas import UsageRecordCreate


def _as_json_dumps_hashed_it(record: UsageRecordCreate) -> str:
    def canonical(value: Decimal | None) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    fields = {
        "call_id": record.call_id,
        "minutes_used": canonical(record.minutes_used),
        "duration_seconds": canonical(record.duration_seconds),
        "agents_active": record.agents_active,
        "timestamp": None if record.timestamp is None else record.timestamp.isoformat(),
    }
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


@pytest.mark.parametrize(
    "record",
    [
        UsageRecordCreate(call_id="call-1", minutes_used=Decimal("5.0")),
        UsageRecordCreate(call_id='quote " back \\ slash', duration_seconds=Decimal("61.500")),
        UsageRecordCreate(call_id="näive ☎ \n\t\x7f", minutes_used=Decimal("0")),
        UsageRecordCreate(agents_active=12),
        UsageRecordCreate(agents_active=0, timestamp=datetime(2026, 3, 1, tzinfo=UTC)),
        UsageRecordCreate(
            call_id="c",
            minutes_used=Decimal("1E+2"),
            timestamp=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_fingerprints_stay_those_stored_before(record: UsageRecordCreate) -> None:
    assert request_fingerprint(record) == _as_json_dumps_hashed_it(record)
