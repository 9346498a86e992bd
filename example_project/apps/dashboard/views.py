"""The dashboard at ``/``: log in with e-mail and password, then see and act on one's requests,
invites and salons, updated live over the WebSocket.

The pages are rendered here; the buttons call the package's REST API and the page listens to
its event stream, both with short-lived JWT access tokens that ``POST dashboard/token`` issues
to the logged-in session (the same calls a project's own frontend would make). On each event
the page fetches ``dashboard/sections`` (the lists, rendered by the same templates) again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from rest_framework_simplejwt.tokens import AccessToken

from apps.dashboard import state
from apps.invites.forms import LogInForm
from apps.invites.views import throttled

#: Lifetime of the access tokens the page gets; the client asks for a new one before it ends.
TOKEN_LIFETIME = timedelta(seconds=settings.DASHBOARD_TOKEN_SECONDS)


def _context(request: HttpRequest) -> dict[str, Any]:
    return {"board": state.build(request.user)}


def _live_messages() -> dict[str, str]:
    """What the page's script says (announced to screen readers too), in the page's language."""
    return {
        "invitation.created": _("New request:"),
        "invite.created": _("Invite sent to"),
        "request.arrived": _("A request to join arrived."),
        "invitation.approved": _("A request was approved."),
        "invitation.rejected": _("A request was rejected."),
        "invitation.cancelled": _("A request was withdrawn."),
        "invitation.expired": _("A request expired."),
        "invitation.deleted": _("A request was deleted."),
        "membership.created": _("A member joined."),
        "membership.updated": _("A member's role changed."),
        "membership.deleted": _("A member left."),
        "membership.mine": _("Your membership:"),
        "changed": _("The page was updated."),
        "done": _("Done."),
        "failed": _("The server answered with an error (%(status)s)."),
        "offline": _("The server cannot be reached. Try again in a moment."),
        "stale": _(
            "The lists could not be updated (the server answered %(status)s); they may be out "
            "of date. Reload the page."
        ),
        "refused": _(
            "The page could not get access to the API (the server answered %(status)s). "
            "Reload the page."
        ),
        "gone": _(
            "This is no longer possible: it was changed meanwhile, or is no longer yours to "
            "change. The page has been updated."
        ),
        "state.connecting": _("Live updates: connecting…"),
        "state.open": _("Live updates: on"),
        "state.waiting": _("Live updates: reconnecting…"),
        "state.stopped": _("Live updates: off"),
        "state.signed_out": _("Live updates: off (logged out)"),
    }


@never_cache
@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        **_context(request),
        "live_messages": _live_messages(),
        "websocket_url": settings.WEBSOCKET_URL,
    }
    return render(request, "dashboard/index.html", context)


@never_cache
@require_GET
def sections(request: HttpRequest) -> HttpResponse:
    """The page's live lists alone; 401 once the session has ended."""
    if not request.user.is_authenticated:
        return HttpResponse(status=401)
    return render(request, "dashboard/_sections.html", _context(request))


@never_cache
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    """A JWT access token for the session's user (CSRF-protected: only the page may ask)."""
    if not request.user.is_authenticated or not request.user.is_active:
        return JsonResponse({"detail": _("Log in again.")}, status=401)
    access = AccessToken.for_user(request.user)
    access.set_exp(lifetime=TOKEN_LIFETIME)
    lifetime = int(TOKEN_LIFETIME.total_seconds())
    return JsonResponse(
        {"access": str(access), "expires_at": int(access["exp"]), "expires_in": lifetime}
    )


def _next_url(request: HttpRequest) -> str:
    """Where to go after logging in: ``next`` if it is a path on this site, else ``/``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if allowed else resolve_url("dashboard")


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def log_in(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        if request.user.is_authenticated:
            return HttpResponseRedirect(_next_url(request))
        return _log_in_page(request, LogInForm(request))
    form = LogInForm(request, data=request.POST)
    refused = throttled(request, "auth")
    if refused is not None:
        response = _log_in_page(request, form, error=refused.message, status=refused.status)
        response["Retry-After"] = str(refused.wait)
        return response
    if not form.is_valid():
        return _log_in_page(request, form, status=400)
    login(request, form.get_user())
    return HttpResponseRedirect(_next_url(request))


def _log_in_page(
    request: HttpRequest, form: LogInForm, *, error: str = "", status: int = 200
) -> HttpResponse:
    context = {"form": form, "error": error, "next": _next_url(request)}
    return render(request, "dashboard/login.html", context, status=status)


@require_POST
def log_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("dashboard-login")
