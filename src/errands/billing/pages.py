"""The organization page's ways to Stripe (owners): a form per plan starting Checkout, and
one opening the customer portal; each answers a redirect to Stripe. Mounted only when
billing is on; the page's billing panel itself is in org.html."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from errands.accounts import api
from errands.accounts.access import ADMIN, principal_of
from errands.billing.routes import checkout_url, portal_url

# The organization page's own rendering and error handling: an error shows on the page.
from errands.web.ui.accounts import _attempt, _org

router = APIRouter(include_in_schema=False)


@router.post("/org/billing/checkout", response_model=None, dependencies=[ADMIN])
def checkout(request: Request, plan: Annotated[str, Form()] = "") -> Response:
    org_id = api.org_required(principal_of(request))

    def run() -> Response:
        return RedirectResponse(checkout_url(request, org_id, plan), status_code=303)

    return _attempt(request, run, back=_org)


@router.post("/org/billing/portal", response_model=None, dependencies=[ADMIN])
def portal(request: Request) -> Response:
    org_id = api.org_required(principal_of(request))

    def run() -> Response:
        return RedirectResponse(portal_url(request, org_id), status_code=303)

    return _attempt(request, run, back=_org)
