"""The console's front page and what every section's pages share.

``/console`` lists the sections for the roles the signed-in account holds on
chain, and explains how to get one it lacks. A section's page starts with
:func:`business_user`, which reads the roles at the latest block and refuses,
in words (403), an account without the section's role: the contract would
refuse the action anyway, the page says so first.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from starlette.responses import Response

from api.business import ROLES, Roles, roles_of
from api.errors import ServiceUnavailable
from api.users import User
from web.app import session
from web.app.routes import redirect, render_page, signed_in, signed_in_form

router = APIRouter(prefix="/console", include_in_schema=False, default_response_class=HTMLResponse)


def console_page(request: Request, template: str, user: User, token: str, roles: Roles, section: str | None = None,
                 status: int = 200, **context: Any) -> HTMLResponse:
    """A console page: the app's layout with the console's section navigation."""
    return render_page(request, template, status=status, user=user, token=token, nav="console", roles=roles,
                       section=section, sections=roles.held(), **context)


async def business_user(request: Request, role: str | None = None) -> tuple[User, str, Roles] | Response:
    """The signed-in account, its session token and its on-chain roles; or the
    answer instead: the login page without a session, 503 in words when the
    node cannot be read, 403 in words when ``role`` is not held."""
    signed = signed_in(request)
    if signed is None:
        return redirect(request, "/app/login")
    user, token = signed
    chain = request.app.state.chain
    try:
        roles = await run_in_threadpool(roles_of, chain, user.address)
    except ServiceUnavailable:
        return render_page(request, "app/unavailable.html", status=503, user=user, token=token)
    if role is not None and not getattr(roles, role):
        return console_page(request, "console/no_role.html", user, token, roles, section=role, status=403,
                            role=role)
    return user, token, roles


async def business_form(request: Request, role: str, fields: dict[str, str] | None = None, once: bool = False,
                        ) -> tuple[User, str, Roles, dict[str, str]] | Response:
    """A console form's account, session token, roles and fields, from a
    signed-in account holding ``role`` (same origin, CSRF token: the app's
    :func:`signed_in_form`; with ``once``, a well-formed one-time key too);
    or the answer refusing it. Nothing changes on a refusal. ``fields``: the
    text fields of a multipart form, already read."""
    checked_form = await signed_in_form(request, request.app.state.settings, fields=fields)
    if isinstance(checked_form, Response):
        return checked_form
    if once and not session.FORM_KEY.match(checked_form[2].get("once", "")):
        return render_page(request, "app/refused.html", status=403, reason="form")
    checked = await business_user(request, role)
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return user, token, roles, checked_form[2]


@router.get("")
async def home(request: Request) -> Response:
    """The sections this account's roles open, and the ones it lacks."""
    checked = await business_user(request)
    if isinstance(checked, Response):
        return checked
    user, token, roles = checked
    return console_page(request, "console/home.html", user, token, roles,
                        missing=[role for role in ROLES if role not in roles.held()])
