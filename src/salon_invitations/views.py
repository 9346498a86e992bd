"""REST endpoints. Thin: they scope querysets by the policy, validate, call services, render."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, mixins, parsers, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from salon_invitations import services
from salon_invitations.exceptions import Conflict, Gone, InvalidInvitation, NotAllowed, TooSoon
from salon_invitations.models import (
    Invitation,
    SalonEvent,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.parsers import JSONParser, RequestBodyTooLarge
from salon_invitations.permissions import InvitationRateThrottle, PolicyPermission
from salon_invitations.policies import BasePolicy, get_policy, remembered_roles
from salon_invitations.serializers import (
    ApproveSerializer,
    DeclinedSerializer,
    InvitationSerializer,
    InviteBatchSerializer,
    InviteSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    PublicInviteSerializer,
    RejectSerializer,
    SalonEventQuerySerializer,
    SalonEventSerializer,
    SalonSerializer,
    TransferSerializer,
    invitation_serializer_class,
    membership_serializer_class,
    salon_serializer_class,
)

try:
    from drf_spectacular.utils import OpenApiParameter, extend_schema

    TOKEN_PARAMETERS: list[Any] = [
        OpenApiParameter("token", str, OpenApiParameter.PATH, description="The invite's token.")
    ]
    EVENT_PARAMETERS: list[Any] = [
        OpenApiParameter("since", int, description="Only events after this id."),
        OpenApiParameter("salon", str, description="Only this salon's events."),
        OpenApiParameter(
            "kind",
            str,
            description="An event kind (invitation.approved) or a prefix and * (invitation.*).",
        ),
    ]
except ImportError:  # pragma: no cover - drf-spectacular is optional

    def extend_schema(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda view: view

    TOKEN_PARAMETERS = []
    EVENT_PARAMETERS = []


try:
    from django_filters.rest_framework import DjangoFilterBackend

    from salon_invitations.filters import InvitationFilterSet, MembershipFilterSet
except ImportError:  # pragma: no cover - django-filter is an optional extra
    DjangoFilterBackend = None
    InvitationFilterSet = MembershipFilterSet = None  # type: ignore[assignment,misc]


class CodedError(exceptions.APIException):
    """An error with a machine-readable ``code``: ``{"detail": "...", "code": "..."}``."""

    def __init__(self, status_code: int, message: Any, code: str, wait: float | None = None):
        self.status_code = status_code
        if wait is not None:
            self.wait = wait  # DRF's handler sends it as Retry-After
        super().__init__({"detail": message, "code": code}, code)


class ConflictError(CodedError):
    """409 with a machine-readable ``code``: ``{"detail": "...", "code": "role_taken"}``."""

    def __init__(self, conflict: Conflict) -> None:
        super().__init__(status.HTTP_409_CONFLICT, conflict.message, conflict.code)


class AliasOrderingFilter(OrderingFilter):
    """``?ordering=`` accepting the representation's names (``created_at``, ``updated_at``)."""

    aliases = {"created_at": "created", "updated_at": "modified"}

    def remove_invalid_fields(self, queryset: Any, fields: Any, view: Any, request: Any) -> Any:
        fields = [
            ("-" if term.startswith("-") else "")
            + self.aliases.get(term.lstrip("-"), term.lstrip("-"))
            for term in fields
        ]
        return super().remove_invalid_fields(queryset, fields, view, request)


def _filter_backends() -> list[Any]:
    backends: list[Any] = [
        b for b in api_settings.DEFAULT_FILTER_BACKENDS if b is not AliasOrderingFilter
    ]
    if DjangoFilterBackend is not None and DjangoFilterBackend not in backends:
        backends.append(DjangoFilterBackend)
    return [b for b in backends if not issubclass(b, OrderingFilter)] + [AliasOrderingFilter]


class PolicyGenericViewSet(viewsets.GenericViewSet):
    """Scopes querysets by the policy and turns service errors into 400 / 409 responses."""

    permission_classes = [PolicyPermission]
    policy_checks: dict[str, str] = {}

    @property
    def policy(self) -> BasePolicy:
        return get_policy()

    def get_parsers(self) -> list[Any]:
        # DRF's JSON parser recurses once per nesting level: a small ``[[[…]]]`` body would be
        # a 500. The package's parser refuses deep nesting with a 400; projects that list it
        # in DEFAULT_PARSER_CLASSES already have it, others get it here.
        return [(JSONParser if cls is parsers.JSONParser else cls)() for cls in self.parser_classes]

    def recheck(self, check: str | None = None, *args: Any) -> Any:
        """The policy's ``check`` (by default this action's, from ``policy_checks``) for the
        caller, for the service to ask again under the salon's lock."""
        method = getattr(self.policy, check or self.policy_checks[self.action])
        user = self.request.user
        return lambda obj: bool(method(user, obj, *args))

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The caller's roles are read once per request (visibility and the permission check
        # share them). The services' re-check under the salon's lock, and everything after
        # the commit (backends, signal receivers), read the roles of the moment instead.
        with remembered_roles():
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.method in ("POST", "PUT", "PATCH"):
            # Parse the body even for actions that read nothing from it: a body that is not
            # valid JSON is a 400, never silently ignored (``PATCH …/approved`` included).
            request.data  # noqa: B018

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, Conflict):
            exc = ConflictError(exc)
        elif isinstance(exc, NotAllowed):
            exc = exceptions.PermissionDenied(exc.message)
        elif isinstance(exc, Gone):
            # Deleted by a concurrent request after this one loaded it.
            exc = exceptions.NotFound(exc.message)
        elif isinstance(exc, RequestDataTooBig):
            exc = RequestBodyTooLarge()
        elif isinstance(exc, TooSoon):
            exc = CodedError(
                status.HTTP_429_TOO_MANY_REQUESTS, exc.message, exc.code, wait=exc.retry_after
            )
        elif isinstance(exc, InvalidInvitation):
            exc = exceptions.ValidationError(
                {exc.field or "non_field_errors": [exc.message]}, exc.code
            )
        return super().handle_exception(exc)


class InvitationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    PolicyGenericViewSet,
):
    """Invitations the caller may see; create one, approve, reject, cancel or delete it."""

    policy_checks = {
        "approve": "can_decide",
        "reject": "can_decide",
        "cancel": "can_cancel",
        "destroy": "can_delete",
        "resend": "can_resend",
    }
    throttle_scopes = {
        "invite": "salon_invitations.invite",
        "resend": "salon_invitations.invite",
        "create": "salon_invitations.create",
        "approve": "salon_invitations.decide",
        "reject": "salon_invitations.decide",
        "cancel": "salon_invitations.decide",
        "destroy": "salon_invitations.decide",
    }
    filterset_class = InvitationFilterSet
    ordering_fields = ("created", "modified", "status", "role", "decided_at", "expires_at", "id")

    @property
    def salon_throttle_scope(self) -> str | None:
        return self.throttle_scopes.get(self.action)

    def get_throttles(self) -> list[Any]:
        return [*super().get_throttles(), InvitationRateThrottle()]

    ordering = ("-created", "-id")

    @property
    def filter_backends(self) -> list[Any]:  # type: ignore[override]
        return _filter_backends()

    def get_queryset(self) -> Any:
        return self.policy.visible_invitations(self.request.user, Invitation.objects.all())

    def get_serializer_class(self) -> Any:
        if self.action == "reject":
            return RejectSerializer
        if self.action == "invite":
            return InviteSerializer
        return invitation_serializer_class()

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        user, role = self.request.user, data["role"]
        # Asked once, under the salon's lock, with the salon as the lock read it (the
        # serializer reads no further than its id).
        serializer.instance = services.create_invitation(
            user=user,
            salon=data["salon"],
            role=role,
            message=data.get("message", ""),
            authorize=lambda salon: self.policy.can_create_invitation(user, salon, role),
        )

    def _render(self, invitation: Invitation) -> Response:
        serializer = invitation_serializer_class()(
            invitation, context=self.get_serializer_context()
        )
        return Response(serializer.data)

    @extend_schema(request=ApproveSerializer, responses=InvitationSerializer)
    @action(detail=True, methods=["patch"])
    def approve(self, request: Request, pk: Any = None) -> Response:
        """Approve; ``{"role": …}`` grants another role than the one asked for."""
        invitation = self.get_object()
        body = ApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        role = body.validated_data.get("role")
        if role is not None and not self.policy.can_approve_as(request.user, invitation, role):
            raise exceptions.PermissionDenied(_("You may not grant this role."))
        check = self.recheck("can_approve_as", role) if role is not None else self.recheck()
        return self._render(
            services.approve_invitation(invitation, actor=request.user, role=role, authorize=check)
        )

    @extend_schema(request=RejectSerializer, responses=InvitationSerializer)
    @action(detail=True, methods=["patch"])
    def reject(self, request: Request, pk: Any = None) -> Response:
        invitation = self.get_object()
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        return self._render(
            services.reject_invitation(
                invitation, actor=request.user, reason=reason, authorize=self.recheck()
            )
        )

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["patch"])
    def cancel(self, request: Request, pk: Any = None) -> Response:
        invitation = self.get_object()
        return self._render(
            services.cancel_invitation(invitation, actor=request.user, authorize=self.recheck())
        )

    def destroy(self, request: Request, pk: Any = None) -> Response:
        services.delete_invitation(self.get_object(), actor=request.user, authorize=self.recheck())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=InviteSerializer,
        responses={201: InvitationSerializer, 200: InviteBatchSerializer},
    )
    @action(detail=False, methods=["post"], url_path="invite")
    def invite(self, request: Request) -> Response:
        """Invite a person by e-mail (``email``), or up to 100 (``emails``)."""
        body = InviteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        salon = data["salon"]
        visible = get_salon_model()._default_manager.filter(pk=salon.pk)
        if not self.policy.visible_salons(request.user, visible).exists():
            raise exceptions.NotFound()
        if not self.policy.can_invite(request.user, salon, data["role"]):
            raise exceptions.PermissionDenied(
                _("You may not invite people to this salon in this role.")
            )
        fields = {
            "salon": salon,
            "role": data["role"],
            "invited_by": request.user,
            "message": data.get("message", ""),
            "authorize": self.recheck("can_invite", data["role"]),
        }
        if "emails" in data:
            outcome = services.invite_many(emails=data["emails"], **fields)
            context = self.get_serializer_context()
            return Response(InviteBatchSerializer(outcome, context=context).data)
        invitation = services.invite(email=data["email"], **fields)
        response = self._render(invitation)
        response.status_code = status.HTTP_201_CREATED
        return response

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: Any = None) -> Response:
        """E-mail a pending invite again with a new link (the old one stops working)."""
        return self._render(
            services.resend_invite(self.get_object(), actor=request.user, authorize=self.recheck())
        )


@extend_schema(parameters=TOKEN_PARAMETERS)
class InviteTokenViewSet(PolicyGenericViewSet):
    """What the holder of an invite link does: look at it, accept it, decline it.

    Any unusable token (unknown, used, expired, revoked) is the same 404. Accepting needs an
    account whose e-mail is the invite's (the policy's ``can_accept``); looking and declining
    need only the token.
    """

    lookup_field = "token"
    lookup_value_regex = r"[A-Za-z0-9_\-]+"
    queryset = Invitation.objects.none()
    serializer_class = PublicInviteSerializer

    def get_permissions(self) -> list[Any]:
        if self.action == "accept":
            return [permissions.IsAuthenticated()]
        return [permissions.AllowAny()]

    @extend_schema(responses=PublicInviteSerializer)
    def retrieve(self, request: Request, token: str = "") -> Response:
        return Response(PublicInviteSerializer(services.find_invite(token)).data)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, token: str = "") -> Response:
        invitation = services.find_invite(token)
        if not self.policy.can_accept(request.user, invitation):
            if not request.user.is_active:
                raise CodedError(
                    status.HTTP_403_FORBIDDEN, services.MSG_INACTIVE_ACCOUNT, "inactive_user"
                )
            raise CodedError(
                status.HTTP_403_FORBIDDEN,
                _("This invite was sent to another e-mail address than your account's."),
                "email_mismatch",
            )
        accepted = services.accept_invite(invitation, user=request.user)
        serializer_class = invitation_serializer_class()
        return Response(serializer_class(accepted, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=DeclinedSerializer)
    @action(detail=True, methods=["post"])
    def decline(self, request: Request, token: str = "") -> Response:
        actor = request.user if request.user.is_authenticated else None
        services.decline_invite(services.find_invite(token), actor=actor)
        return Response({"status": Invitation.STATUS.rejected})


class SalonViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    PolicyGenericViewSet,
):
    """Salons. Whoever creates one becomes its owner; the owner (or staff) changes or deletes it."""

    policy_checks = {
        "update": "can_change_salon",
        "partial_update": "can_change_salon",
        "destroy": "can_change_salon",
        "transfer": "can_transfer",
    }
    ordering_fields = ("name", "created", "id")

    @property
    def filter_backends(self) -> list[Any]:  # type: ignore[override]
        return [AliasOrderingFilter]

    def get_queryset(self) -> Any:
        return self.policy.visible_salons(
            self.request.user, get_salon_model()._default_manager.order_by("name", "pk")
        )

    def get_serializer_class(self) -> Any:
        return salon_serializer_class()

    def perform_create(self, serializer: Any) -> None:
        if not self.policy.can_create_salon(self.request.user):
            raise exceptions.PermissionDenied()
        serializer.instance = services.create_salon(
            owner=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer: Any) -> None:
        serializer.instance = services.update_salon(
            serializer.instance, authorize=self.recheck(), **serializer.validated_data
        )

    def perform_destroy(self, instance: Any) -> None:
        services.delete_salon(instance, actor=self.request.user, authorize=self.recheck())

    @extend_schema(request=TransferSerializer, responses=SalonSerializer)
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, pk: Any = None) -> Response:
        """Hand the salon to another member; the previous owner takes ``previous_owner_role``."""
        salon = self.get_object()
        body = TransferSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        salon = services.transfer_ownership(
            salon,
            new_owner=body.validated_data["owner"],
            previous_owner_role=body.validated_data.get("previous_owner_role"),
            actor=request.user,
            authorize=self.recheck(),
        )
        serializer_class = salon_serializer_class()
        return Response(serializer_class(salon, context=self.get_serializer_context()).data)


class MembershipViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    PolicyGenericViewSet,
):
    """Memberships (roles) in the salons the caller belongs to; change a member's role
    (``PATCH {"role": …}``) or remove one to free the role."""

    policy_checks = {"destroy": "can_remove_membership"}
    filterset_class = MembershipFilterSet
    ordering_fields = ("created", "role", "id")

    @property
    def filter_backends(self) -> list[Any]:  # type: ignore[override]
        return _filter_backends()

    def get_queryset(self) -> Any:
        queryset = get_membership_model()._default_manager.order_by("salon_id", "pk")
        return self.policy.visible_memberships(self.request.user, queryset)

    def get_serializer_class(self) -> Any:
        return membership_serializer_class()

    def perform_destroy(self, instance: Any) -> None:
        services.remove_membership(instance, actor=self.request.user, authorize=self.recheck())

    @extend_schema(request=MembershipRoleSerializer, responses=MembershipSerializer)
    def partial_update(self, request: Request, pk: Any = None) -> Response:
        membership = self.get_object()
        body = MembershipRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        role = body.validated_data["role"]
        if not self.policy.can_change_role(request.user, membership, role):
            raise exceptions.PermissionDenied(_("You may not give this member this role."))
        changed = services.change_role(
            membership,
            role=role,
            actor=request.user,
            authorize=self.recheck("can_change_role", role),
        )
        serializer_class = membership_serializer_class()
        return Response(serializer_class(changed, context=self.get_serializer_context()).data)


#: Above this many branches (a user managing many salons), one query with an OR is cheaper.
MAX_EVENT_BRANCHES = 20


class EventCursorPagination(CursorPagination):
    """Ascending ids, 50 a page (``page_size`` up to 500); the cursor is opaque."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request: Request) -> Any:
        cursor = super().decode_cursor(request)
        position = str(cursor.position) if cursor and cursor.position is not None else None
        # The position goes into ``id > …``: anything but an id is an invalid cursor (404, as
        # for any other malformed cursor), never a database error.
        if position is not None and not (
            position.isascii() and position.isdigit() and len(position) <= 18
        ):
            raise exceptions.NotFound(self.invalid_cursor_message)
        return cursor


class SalonEventViewSet(mixins.ListModelMixin, PolicyGenericViewSet):
    """The audit log: what happened, who did it, when — oldest first.

    Managers see their salons' events, everyone the events about themselves, staff all (the
    policy's ``visible_events``). Filters: ``since`` (events after that id), ``salon``,
    ``kind`` (``invitation.approved`` or ``invitation.*``).
    """

    serializer_class = SalonEventSerializer
    pagination_class = EventCursorPagination
    filter_backends: list[Any] = []

    def get_queryset(self) -> Any:
        query = SalonEventQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        events = SalonEvent.objects.all()
        if "since" in filters:
            events = events.filter(id__gt=filters["since"])
        if "salon" in filters:
            events = events.filter(salon_id=filters["salon"])
        kind = filters.get("kind")
        if kind and kind.endswith(".*"):
            events = events.filter(kind__startswith=kind[:-1])
        elif kind:
            events = events.filter(kind=kind)
        user = self.request.user
        branches = self.policy.event_branches(user, events)
        if branches is not None and len(branches) <= MAX_EVENT_BRANCHES:
            # The branches only narrow the rows to look at; visibility stays the policy's.
            events = events.filter(pk__in=self._page_candidates(branches))
        return self.policy.visible_events(user, events)

    def _page_candidates(self, branches: list[Any]) -> list[int]:
        """The ids that can be on the requested page: the next page's worth of each branch
        from the cursor's position (one index range scan each), instead of sorting every
        visible row."""
        paginator = self.paginator
        assert isinstance(paginator, EventCursorPagination)
        cursor = paginator.decode_cursor(self.request)
        size = (paginator.get_page_size(self.request) or paginator.page_size or 50) + 1
        reverse = bool(cursor and cursor.reverse)
        take = size + (cursor.offset if cursor else 0)
        ids: set[int] = set()
        for branch in branches:
            if cursor is not None and cursor.position is not None:
                position = int(cursor.position)
                branch = (
                    branch.filter(id__lt=position) if reverse else branch.filter(id__gt=position)
                )
            ordered = branch.order_by("-id" if reverse else "id")
            ids.update(ordered.values_list("id", flat=True)[:take])
        return sorted(ids)

    @extend_schema(parameters=EVENT_PARAMETERS)
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
