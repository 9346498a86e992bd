"""The page behind an invite's link: ``GET /invite/<token>`` shows the invite, POSTs act on it.

GET changes nothing: mail scanners follow links. Every change is a POST to the same address,
with the CSRF token and one of the page's buttons (``action``): ``accept``, ``decline``,
``log_in``, ``sign_up`` (a new account with the invited address, accepting in the same
transaction) and ``log_out``. What the package refuses is shown as a plain message with the
matching status (403, 404, 409); an unusable link, whatever the reason, is the same 404 page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from apps.invites import joining
from apps.invites.forms import LogInForm, SignUpForm
from configs.exceptions import RETRY_AFTER_SECONDS, ServiceUnavailable
from salon_invitations import services
from salon_invitations.exceptions import Conflict, Gone
from salon_invitations.models import Invitation
from salon_invitations.policies import get_policy

logger = logging.getLogger("configs")

Handler = Callable[[HttpRequest, Invitation], HttpResponse]


class PageThrottle(SimpleRateThrottle):
    """The API's rate for ``scope`` (``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``), per client
    address. The cache key is the one DRF's scoped throttle uses for anonymous clients, so
    logging in here and at ``api/auth`` (or signing up here and at ``api/user/registration``)
    draw on one allowance."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__()

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class Refusal(NamedTuple):
    """Why a page refuses a post: the message, the seconds to wait (``Retry-After``), the
    status."""

    message: str
    wait: int
    status: int


def throttled(request: HttpRequest, scope: str) -> Refusal | None:
    """``None`` if ``request`` is within ``scope``'s rate, else the refusal: 429, or 503 while
    the throttle's cache (Redis) does not answer. Shared by the pages that log people in."""
    throttle = PageThrottle(scope)
    try:
        allowed = throttle.allow_request(request, None)
    except RedisError as exc:  # fail closed, as the API does (configs.exceptions)
        logger.warning("Redis did not answer (%r): 503", exc)
        return Refusal(str(ServiceUnavailable.default_detail), RETRY_AFTER_SECONDS, 503)
    if allowed:
        return None
    wait = max(1, round(throttle.wait() or 1))
    message = _("Too many attempts from your network. Try again in %(seconds)d seconds.") % {
        "seconds": wait
    }
    return Refusal(message, wait, 429)


def _throttled(request: HttpRequest, invitation: Invitation, scope: str) -> HttpResponse | None:
    refused = throttled(request, scope)
    if refused is None:
        return None
    response = _show(request, invitation, error=refused.message, status=refused.status)
    response["Retry-After"] = str(refused.wait)
    return response


# Pages ------------------------------------------------------------------------------------------


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int
) -> HttpResponse:
    response = render(request, f"invites/{template}", context, status=status)
    # The address holds the token: keep it out of Referer headers. Not "no-referrer": with it,
    # browsers send "Origin: null" with the page's own form posts, and the CSRF check refuses
    # them. "strict-origin" sends the origin alone (never the path), and nothing to plain HTTP.
    response["Referrer-Policy"] = "strict-origin"
    return response


def _show(
    request: HttpRequest,
    invitation: Invitation,
    *,
    error: str = "",
    status: int = 200,
    login_form: LogInForm | None = None,
    signup_form: SignUpForm | None = None,
) -> HttpResponse:
    """The invite, and what the visitor may do with it."""
    context: dict[str, Any] = {
        "invite": joining.describe(invitation),
        "expires_at": invitation.expires_at,
        "error": error,
    }
    if request.user.is_authenticated:
        context["may_accept"] = get_policy().can_accept(request.user, invitation)
    else:
        context["login_form"] = login_form or LogInForm(
            request, prefix="login", initial={"username": invitation.email}
        )
        context["signup_form"] = signup_form or SignUpForm(invitation, prefix="signup")
    return _page(request, "invite.html", context, status)


def _gone(request: HttpRequest, error: Gone) -> HttpResponse:
    return _page(request, "gone.html", {"message": error.message}, 404)


def _outcome(request: HttpRequest, title: str, message: str, *, status: int = 200) -> HttpResponse:
    context = {"title": title, "message": message, "problem": status >= 400}
    return _page(request, "outcome.html", context, status)


def _accepted(request: HttpRequest, invite: dict[str, Any]) -> HttpResponse:
    names = {"salon": invite["salon"]["name"], "role": invite["role_label"]}
    return _outcome(
        request,
        _("Welcome to %(salon)s") % names,
        _("You accepted the invite: you are now a member of %(salon)s as %(role)s.") % names,
    )


def _refused(request: HttpRequest, invite: dict[str, Any], conflict: Conflict) -> HttpResponse:
    names = {"salon": invite["salon"]["name"], "role": invite["role_label"]}
    messages = {
        "role_taken": _(
            "The %(role)s role at %(salon)s has been filled meanwhile, so the invite can no "
            "longer be accepted. Ask the person who invited you."
        ),
        "already_member": _("You are already a member of %(salon)s."),
    }
    message = messages[conflict.code] % names if conflict.code in messages else conflict.message
    return _outcome(request, _("The invite could not be accepted"), str(message), status=409)


# Actions ----------------------------------------------------------------------------------------


def _accept(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    if not request.user.is_authenticated:
        error = _("Log in, or create your account, to accept the invite.")
        return _show(request, invitation, error=error, status=403)
    invite = joining.describe(invitation)
    try:
        joining.accept(invitation, request.user)
    except joining.NotYourInvite as exc:
        return _show(request, invitation, error=str(exc.message), status=403)
    except Conflict as exc:
        return _refused(request, invite, exc)
    except Gone as exc:
        return _gone(request, exc)
    return _accepted(request, invite)


def _decline(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    invite = joining.describe(invitation)
    actor = request.user if request.user.is_authenticated else None
    try:
        services.decline_invite(invitation, actor=actor)
    except Gone as exc:
        return _gone(request, exc)
    names = {"salon": invite["salon"]["name"], "role": invite["role_label"]}
    return _outcome(
        request,
        _("Invite declined"),
        _("You declined the invite to join %(salon)s as %(role)s. The link no longer works.")
        % names,
    )


def _log_in(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    if refused := _throttled(request, invitation, "auth"):
        return refused
    form = LogInForm(request, data=request.POST, prefix="login")
    if not form.is_valid():
        return _show(request, invitation, login_form=form, status=400)
    login(request, form.get_user())
    return redirect(request.path)


def _sign_up(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    if request.user.is_authenticated:
        error = _("You are logged in already: log out first to create another account.")
        return _show(request, invitation, error=error, status=400)
    if refused := _throttled(request, invitation, "registration"):
        return refused
    form = SignUpForm(invitation, data=request.POST, prefix="signup")
    if not form.is_valid():
        return _show(request, invitation, signup_form=form, status=400)
    invite = joining.describe(invitation)
    try:
        user, _accepted_invitation = joining.sign_up_and_accept(
            invitation, form.cleaned_data["password"]
        )
    except joining.AddressTaken:
        error = _("An account with this address exists already: log in to accept the invite.")
        return _show(request, invitation, error=error, status=400)
    except joining.NotYourInvite as exc:
        return _show(request, invitation, error=str(exc.message), status=403)
    except Conflict as exc:
        return _refused(request, invite, exc)
    except Gone as exc:
        return _gone(request, exc)
    login(request, user)
    return _accepted(request, invite)


def _log_out(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    logout(request)
    return redirect(request.path)


ACTIONS: dict[str, Handler] = {
    "accept": _accept,
    "decline": _decline,
    "log_in": _log_in,
    "sign_up": _sign_up,
    "log_out": _log_out,
}


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def invite_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.find_invite(token)
    except Gone as exc:
        return _gone(request, exc)
    if request.method != "POST":
        return _show(request, invitation)
    action = ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        return _show(request, invitation, error=_("Choose one of the buttons below."), status=400)
    return action(request, invitation)
