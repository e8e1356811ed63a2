from typing import Annotated

from fastapi import Depends, Request

from app.invoices.branding import SellerBranding


async def get_default_branding(request: Request) -> SellerBranding:
    # Built once at start-up (create_app), where a bad logo file stops the service.
    branding: SellerBranding = request.app.state.default_branding
    return branding


DefaultBrandingDep = Annotated[SellerBranding, Depends(get_default_branding)]
