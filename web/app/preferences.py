"""The reader's preferences under ``/app``: the time zone of the pages'
dates and times (:mod:`web.app.times`), chosen on the account page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.deps import SettingsDep
from api.errors import Forbidden, InvalidRequest, error_responses
from web.app import routes, times

router = APIRouter(prefix="/app", include_in_schema=False, default_response_class=HTMLResponse)


@router.post("/timezone", responses={303: {"description": "Back to the account page."},
                                     **error_responses(Forbidden, InvalidRequest, html=True)})
async def choose_timezone(request: Request, settings: SettingsDep) -> Response:
    """Keep the zone chosen in the account page's list (or, chosen empty, let
    the browser's own zone be taken again). A name the server does not know is
    refused (422, the account page saying so) and nothing is kept."""
    checked = await routes._signed_in_form(request, settings)
    if isinstance(checked, Response):
        return checked
    user, token, form = checked
    name = form.get("tz", "")
    zone = times.known(name)
    if name and zone is None:
        return routes._page(request, "app/account.html", status=422, user=user, token=token, errors=set(),
                            error=None, notice=None, tz_error=True)
    response = routes._redirect(request, "/app/account", done="timezone")
    times.remember(response, settings, zone)
    return response
