"""/docs and /redoc render from the service's own files, with the internet out of reach."""

from pathlib import Path

from tests.browser.conftest import OfflinePage


async def test_swagger_ui_renders_every_operation_with_the_outside_network_blocked(
    live_server: str, offline_page: OfflinePage, screenshot_dir: Path
) -> None:
    page = offline_page.page
    await page.goto(f"{live_server}/docs")

    # Swagger UI draws one block per operation once it has fetched and read openapi.json.
    await page.locator(".opblock").first.wait_for()
    operations = await page.locator(".opblock").count()
    assert operations > 20
    assert "Billing service" in await page.locator(".information-container").inner_text()
    assert await page.get_by_text("/subscriptions/api/subscribe/", exact=True).count() >= 1
    await page.screenshot(path=str(screenshot_dir / "docs.png"), full_page=False)
    assert offline_page.blocked == []


async def test_redoc_renders_with_the_outside_network_blocked(
    live_server: str, offline_page: OfflinePage, screenshot_dir: Path
) -> None:
    page = offline_page.page
    await page.goto(f"{live_server}/redoc")

    await page.get_by_role("heading", name="Billing service").first.wait_for()
    assert await page.locator("[data-section-id^='operation/']").count() > 20
    await page.screenshot(path=str(screenshot_dir / "redoc.png"))
    assert offline_page.blocked == []
