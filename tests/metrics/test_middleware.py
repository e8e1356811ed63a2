from types import SimpleNamespace

import pytest

from app.core.routing import route_template

API = "/subscriptions/api"


@pytest.mark.parametrize(
    ("path", "declared", "template"),
    [
        (f"{API}/plans/17/", "/plans/{plan_id}/", f"{API}/plans/{{plan_id}}"),
        (f"{API}/plans/17", "/plans/{plan_id}", f"{API}/plans/{{plan_id}}"),
        (f"{API}/admin/plans/", "/admin/plans/", f"{API}/admin/plans"),
        (f"{API}/payment-methods/", "/payment-methods/", f"{API}/payment-methods"),
        ("/healthz", "/healthz", "/healthz"),
        # A route that already carries its whole path (a FastAPI that copies routes).
        (f"{API}/plans/17/", f"{API}/plans/{{plan_id}}/", f"{API}/plans/{{plan_id}}"),
    ],
)
def test_the_label_is_the_full_template_without_ids(
    path: str, declared: str, template: str
) -> None:
    scope = {"path": path, "route": SimpleNamespace(path_format=declared)}

    assert route_template(scope) == template


def test_a_path_no_route_matches_is_one_label() -> None:
    assert route_template({"path": "/wp-admin/123"}) == "unmatched"
