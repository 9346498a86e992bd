"""``manage.py seed_demo``: a small demo world, and how to log in to it.

Safe to run again: existing users, salons and invitations are kept (the demo users' passwords
are reset to the demo password), nothing is duplicated.

It also invites an address that has no account yet. The invite's link holds a token that
exists only in the e-mail, so the command catches that e-mail (Django's in-memory backend)
and prints the link: only when it creates the invite, or with ``--resend-invite``, which
e-mails it again with a new link (the old one stops working).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management.base import BaseCommand
from django.test.utils import override_settings

from salon_invitations import services
from salon_invitations.exceptions import SalonInvitationsError
from salon_invitations.models import Invitation, get_membership_model, get_salon_model

DEMO_PASSWORD = "demo-pass-123"

OWNER = "owner@example.com"
ADMIN = "admin@example.com"
SELLER = "seller@example.com"
APPLICANT = "applicant@example.com"
STAFF = "staff@example.com"
#: Invited to North Star Motors as mechanic by its admin; has no account until they accept.
INVITEE = "newcomer@example.com"
INVITEE_SALON, INVITEE_ROLE = "North Star Motors", "mechanic"

#: e-mail -> (what the account shows in the demo, extra user fields)
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    OWNER: ("owner of both salons (role superuser): decides every request", {}),
    ADMIN: ("admin of North Star Motors: decides seller and mechanic requests there", {}),
    SELLER: ("has a pending request to join North Star Motors as seller", {}),
    APPLICANT: ("was turned down as mechanic at South Gate Autos; free to ask again", {}),
    STAFF: (
        "platform staff: Django admin, decides anything",
        {"is_staff": True, "is_superuser": True},
    ),
}

#: name -> location; both owned by OWNER
SALONS = {
    "North Star Motors": "Kyiv, 1 Khreshchatyk St",
    "South Gate Autos": "Odesa, 5 Derybasivska St",
}


class Command(BaseCommand):
    help = (
        f"Create demo users (password {DEMO_PASSWORD!r}), two auto salons, and pending and "
        "decided invitations; print how to log in. Running it again changes nothing but the "
        "demo users' passwords."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where the server will listen, for the printed instructions.",
        )
        parser.add_argument(
            "--notify",
            action="store_true",
            help="Send the usual notifications (e-mail, WebSocket) for the demo's changes.",
        )
        parser.add_argument(
            "--resend-invite",
            action="store_true",
            help=f"E-mail the pending invite of {INVITEE} again and print its new link.",
        )

    def handle(
        self, *args: Any, base_url: str, notify: bool, resend_invite: bool, **options: Any
    ) -> None:
        self.resend_invite = resend_invite
        self.invite_link = ""
        if notify:
            self.seed()
        else:
            # The demo data is news to nobody: without --notify the console e-mail backend
            # would print a message for every request and decision created here.
            quiet = {**getattr(settings, "SALON_INVITATIONS", {}), "NOTIFICATION_BACKENDS": []}
            with override_settings(SALON_INVITATIONS=quiet):
                self.seed()
        self.print_instructions(base_url.rstrip("/"))

    # Seeding --------------------------------------------------------------------------------

    def seed(self) -> None:
        users = {email: self.ensure_user(email, extra) for email, (_, extra) in USERS.items()}
        owner = users[OWNER]
        north, south = (
            self.ensure_salon(name, location, owner) for name, location in SALONS.items()
        )
        self.ensure_invitation(users[ADMIN], north, "admin", decide="approve", actor=owner)
        self.ensure_invitation(users[SELLER], north, "seller", decide=None, actor=owner)
        self.ensure_invitation(
            users[APPLICANT],
            south,
            "mechanic",
            decide="reject",
            actor=owner,
            reason="We are not hiring mechanics this month.",
        )
        self.ensure_invite(north, INVITEE_ROLE, inviter=users[ADMIN])

    def ensure_user(self, email: str, extra: dict[str, Any]) -> Any:
        User = get_user_model()
        user, created = User._default_manager.get_or_create(email=email, defaults=extra)
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
        self.report(created, f"user {email}")
        return user

    def ensure_salon(self, name: str, location: str, owner: Any) -> Any:
        salon = get_salon_model()._default_manager.filter(name=name, owner=owner).first()
        created = salon is None
        if created:
            salon = services.create_salon(owner=owner, name=name, location=location)
        self.report(created, f"salon {name!r}")
        return salon

    def ensure_invitation(
        self,
        user: Any,
        salon: Any,
        role: str,
        *,
        decide: str | None,
        actor: Any,
        reason: str = "",
    ) -> None:
        label = f"{user.email} → {salon.name} as {role}"
        is_member = get_membership_model()._default_manager.filter(user=user, salon=salon).exists()
        if is_member or Invitation.objects.filter(user=user, salon=salon).exists():
            self.report(False, f"invitation {label}")
            return
        try:
            invitation = services.create_invitation(
                user=user, salon=salon, role=role, message="Seeded by seed_demo."
            )
            if decide == "approve":
                services.approve_invitation(invitation, actor=actor)
            elif decide == "reject":
                services.reject_invitation(invitation, actor=actor, reason=reason)
        except SalonInvitationsError as exc:  # e.g. the role was given to someone else
            self.stdout.write(self.style.WARNING(f"  skipped  invitation {label}: {exc}"))
            return
        outcome = {"approve": "approved", "reject": "rejected"}.get(decide or "", "pending")
        self.report(True, f"invitation {label} ({outcome})")

    def ensure_invite(self, salon: Any, role: str, *, inviter: Any) -> None:
        """A pending invite of :data:`INVITEE`, who has no account; its link is printed."""
        label = f"invite {INVITEE} → {salon.name} as {role}"
        if get_user_model()._default_manager.filter(email__iexact=INVITEE).exists():
            self.report(False, f"{label} (accepted: {INVITEE} has an account)")
            return
        pending = Invitation.objects.filter(
            direction=Invitation.DIRECTION.invite,
            email=INVITEE,
            salon=salon,
            status=Invitation.STATUS.pending,
        ).first()
        if pending is not None and not self.resend_invite:
            self.report(False, f"{label} (pending; --resend-invite prints a new link)")
            return
        try:
            if pending is not None:
                self.invite_link = capture_invite_link(
                    lambda: services.resend_invite(pending, actor=inviter)
                )
            else:
                self.invite_link = capture_invite_link(
                    lambda: services.invite(
                        salon=salon,
                        email=INVITEE,
                        role=role,
                        invited_by=inviter,
                        message="Seeded by seed_demo.",
                    )
                )
        except SalonInvitationsError as exc:  # e.g. resent moments ago, or the role was filled
            self.stdout.write(self.style.WARNING(f"  skipped  {label}: {exc}"))
            return
        if pending is not None:
            self.stdout.write(self.style.SUCCESS(f"  resent   {label} (a new link)"))
        else:
            self.report(True, f"{label} (pending)")

    def report(self, created: bool, what: str) -> None:
        if created:
            self.stdout.write(self.style.SUCCESS(f"  created  {what}"))
        else:
            self.stdout.write(f"  exists   {what}")

    # Instructions ---------------------------------------------------------------------------

    def print_instructions(self, base: str) -> None:
        ws = base.replace("http", "ws", 1)
        pending = (
            Invitation.objects.filter(user__email=SELLER, status=Invitation.STATUS.pending)
            .values_list("pk", flat=True)
            .first()
        )
        width = max(len(email) for email in USERS)
        lines = [
            "",
            f"Demo data is ready. Every demo account's password is: {DEMO_PASSWORD}",
            "",
            *(f"  {email:<{width}}  {note}" for email, (note, _) in USERS.items()),
            "",
            f"Dashboard: {base}/  - watch a request travel live, in two browser windows",
            "(the second one private, or another browser, so that each keeps its own log-in):",
            f"  window 1: log in as {OWNER}      requests to your salons appear as they come",
            f"  window 2: log in as {APPLICANT}  ask to join North Star Motors as mechanic",
            "  then approve it in window 1: window 2 shows 'Approved' without a reload.",
            "",
            "Log in (JWT):",
            f"  curl -s -X POST {base}/api/auth -H 'Content-Type: application/json' \\",
            f'       -d \'{{"email": "{OWNER}", "password": "{DEMO_PASSWORD}"}}\'',
            '  → {"access": "...", "refresh": "..."}; send \'Authorization: Bearer <access>\'',
            "",
            f"  Swagger UI:  {base}/api/doc  (Authorize → jwtAuth → paste the access token)",
            f"  API:         {base}/api/invitation_to_auto_salon",
            f"               {base}/api/auto_salon",
            f"               {base}/api/salon_role",
            f"  Event log:   {base}/api/salon_events  (replay on a socket: add &since=<id>)",
            f"  Admin:       {base}/admin/  ({STAFF})",
            f"  WebSocket:   {ws}/ws/api/invitation_to_auto_salon/?token=<access>",
            f"               (also {ws}/ws/api/salon_role/?token=<access>; clients other than",
            f"               browsers must send 'Origin: {base}')",
        ]
        if pending is not None:
            lines += [
                "",
                "Approve the seller's pending request as the owner:",
                f"  curl -s -X PATCH {base}/api/invitation_to_auto_salon/{pending}/approved "
                "-H 'Authorization: Bearer <access>'",
            ]
        if self.invite_link:
            lines += [
                "",
                f"{INVITEE} (no account yet) is invited to {INVITEE_SALON} as {INVITEE_ROLE}.",
                "Open the link of the invite's e-mail to sign up and accept, or to decline:",
                f"  {self.invite_link}",
            ]
        self.stdout.write("\n".join(lines))


@contextmanager
def _memory_email() -> Iterator[None]:
    """E-mail sent inside goes to ``django.core.mail.outbox`` only."""
    backend = "django.core.mail.backends.locmem.EmailBackend"
    if django.VERSION >= (6, 1):
        email = override_settings(MAILERS={"default": {"BACKEND": backend}})
    else:
        email = override_settings(EMAIL_BACKEND=backend)
    package = {
        **getattr(settings, "SALON_INVITATIONS", {}),
        "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.EmailBackend"],
        "EMAIL_DELIVERY": "sync",
    }
    with email, override_settings(SALON_INVITATIONS=package):
        mail.outbox = []
        try:
            yield
        finally:
            del mail.outbox


def capture_invite_link(send: Callable[[], Any]) -> str:
    """Run ``send`` (which e-mails an invite) and return the accept link of its e-mail."""
    with _memory_email():
        send()
        bodies = [message.body for message in mail.outbox]
    url = getattr(settings, "SALON_INVITATIONS", {}).get("INVITE_URL") or ""
    before, _, after = url.partition("{token}")
    pattern = re.escape(before) + r"[A-Za-z0-9_-]+" + re.escape(after)
    for body in bodies if url else []:
        if found := re.search(pattern, body):
            return found.group(0)
    return "(the invite's e-mail had no link: is INVITE_URL set?)"
