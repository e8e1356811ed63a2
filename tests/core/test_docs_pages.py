"""/docs and /redoc load Swagger UI and ReDoc from this service, and may ask no other host."""

import httpx


async def test_the_docs_pages_load_their_assets_from_the_service(
    client: httpx.AsyncClient,
) -> None:
    for page, asset in (
        ("/docs", "/static-offline-docs/swagger-ui-bundle.js"),
        ("/docs", "/static-offline-docs/swagger-ui.css"),
        ("/redoc", "/static-offline-docs/redoc.standalone.js"),
    ):
        response = await client.get(page)
        assert response.status_code == 200
        assert f'"{asset}"' in response.text
        assert "cdn." not in response.text and "fonts.googleapis" not in response.text
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
        served = await client.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000


async def test_other_pages_carry_no_docs_policy(client: httpx.AsyncClient) -> None:
    assert "content-security-policy" not in (await client.get("/healthz")).headers
