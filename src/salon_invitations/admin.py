"""Admin that acts through the services and the policy, never around them."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from salon_invitations import roles, services
from salon_invitations.exceptions import (
    Conflict,
    Gone,
    InvalidInvitation,
    SalonInvitationsError,
    TooSoon,
)
from salon_invitations.models import (
    Delivery,
    DeliveryAttempt,
    Invitation,
    Membership,
    Salon,
    SalonEvent,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.policies import get_policy

_FAILED = "_salon_invitations_admin_failed"


class ServiceAdminMixin:
    """Runs services for the admin's views and tells only the truth about the outcome.

    A service that refuses (a :class:`Conflict`, or :class:`Gone` when a concurrent request
    deleted the object) is shown as an error message, and the view then skips its "changed /
    deleted successfully" message.
    """

    def run_service(self, request: HttpRequest, call: Any) -> bool:
        try:
            call()
        except SalonInvitationsError as exc:
            self.message_user(request, str(exc.message), messages.ERROR)  # type: ignore[attr-defined]
            setattr(request, _FAILED, True)
            return False
        return True

    def _back_to_list(self, request: HttpRequest) -> HttpResponseRedirect:
        opts = self.model._meta  # type: ignore[attr-defined]
        site_name = self.admin_site.name  # type: ignore[attr-defined]
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist", current_app=site_name)
        return HttpResponseRedirect(url)

    def response_change(self, request: HttpRequest, obj: Any) -> Any:
        if getattr(request, _FAILED, False):
            return self._back_to_list(request)
        return super().response_change(request, obj)  # type: ignore[misc]

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> Any:
        if getattr(request, _FAILED, False):
            return self._back_to_list(request)
        return super().response_delete(request, obj_display, obj_id)  # type: ignore[misc]


class CascadeThroughServicesMixin:
    """For the admin of a model whose deletion takes invitations and memberships with it (the
    salon model, the user model): those rows are removed by the services, each announced, not
    one by one through their own admin, so their per-object delete permission (pending
    invitations only, never the owner's membership) must not block the deletion.

    Add it to your user admin::

        @admin.register(User)
        class UserAdmin(CascadeThroughServicesMixin, auth_admin.UserAdmin):
            ...
    """

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)  # type: ignore[misc]
        handled = {str(model._meta.verbose_name) for model in (Invitation, get_membership_model())}
        return deleted, counts, set(perms_needed) - handled, protected


class InviteForm(forms.Form):
    """The admin's "add invitation" form: an invite by e-mail, made by the invite service.

    The service runs when the form is cleaned, so its refusals (an invalid address, a taken
    role, a pending invite…) show as errors on their fields, and the admin's own save has
    nothing left to do.
    """

    salon: forms.ModelChoiceField[Any] = forms.ModelChoiceField(queryset=None)
    email = forms.CharField(label=_("e-mail address"), max_length=254)
    role = forms.ChoiceField(label=_("role"))
    message = forms.CharField(label=_("message"), required=False, widget=forms.Textarea)

    def __init__(self, *args: Any, request: HttpRequest, **kwargs: Any) -> None:
        kwargs.pop("instance", None)
        super().__init__(*args, **kwargs)
        self.request = request
        self.instance = Invitation()  # the admin's add view reads it
        self.invitation: Invitation | None = None
        self.fields["salon"].queryset = get_salon_model()._default_manager.all()  # type: ignore[attr-defined]
        self.fields["role"].choices = [  # type: ignore[attr-defined]
            (role.name, role.label) for role in roles.requestable_roles()
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        user = self.request.user
        if not get_policy().can_invite(user, data["salon"], data["role"]):
            raise forms.ValidationError(_("You may not invite people to this salon in this role."))
        try:
            self.invitation = services.invite(
                salon=data["salon"],
                email=data["email"],
                role=data["role"],
                invited_by=user,
                message=data.get("message", ""),
            )
        except InvalidInvitation as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, str(exc.message))
        return data


@admin.register(Invitation)
class InvitationAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "direction",
        "user",
        "email",
        "salon",
        "role",
        "status",
        "decided_by",
        "decided_at",
        "created",
    )
    list_filter = ("status", "direction", "role")
    list_select_related = ("user", "salon", "decided_by")
    search_fields = ("salon__name", "email")
    raw_id_fields = ("user", "salon", "decided_by")
    readonly_fields = (
        "direction",
        "user",
        "email",
        "salon",
        "role",
        "requested_role",
        "status",
        "message",
        "reason",
        "invited_by",
        "decided_by",
        "decided_at",
        "expires_at",
        "created",
        "modified",
    )
    actions = ("approve_selected", "reject_selected", "resend_selected", "revoke_selected")
    date_hierarchy = "created"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        return get_policy().visible_invitations(request.user, super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Adding is inviting someone by e-mail (requests come from the users themselves).
        return super().has_add_permission(request)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["salon", "email", "role", "message"]
        return super().get_fields(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)

        class BoundInviteForm(InviteForm):
            def __init__(self, *args: Any, **form_kwargs: Any) -> None:
                super().__init__(*args, request=request, **form_kwargs)

        return BoundInviteForm

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        if change:
            return super().save_form(request, form, change)
        return form.invitation  # made by the invite service when the form was cleaned

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return super().log_addition(request, obj, message) if obj is not None else None

    def _each_invite(
        self, request: HttpRequest, queryset: QuerySet[Invitation], check: str, act: Any
    ) -> None:
        policy = get_policy()
        done, refused = 0, []
        for invitation in queryset.filter(direction=Invitation.DIRECTION.invite):
            if not getattr(policy, check)(request.user, invitation):
                refused.append(invitation)
                continue
            try:
                act(invitation)
            except (Conflict, Gone, TooSoon) as exc:
                self.message_user(request, f"{invitation}: {exc.message}", messages.WARNING)
            else:
                done += 1
        self.message_user(
            request,
            ngettext("%(n)d invite done.", "%(n)d invites done.", done) % {"n": done},
            messages.SUCCESS,
        )
        if refused:
            self.message_user(
                request,
                _("%(n)d skipped: you may not act on them.") % {"n": len(refused)},
                messages.WARNING,
            )

    @admin.action(description=_("E-mail selected invites again (new link)"))
    def resend_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._each_invite(
            request,
            queryset,
            "can_resend",
            lambda invitation: services.resend_invite(invitation, actor=request.user),
        )

    @admin.action(description=_("Revoke selected invites"))
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._each_invite(
            request,
            queryset,
            "can_cancel",
            lambda invitation: services.cancel_invitation(invitation, actor=request.user),
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        if obj is None:
            return allowed
        return allowed and obj.is_pending and get_policy().can_delete(request.user, obj)

    def delete_model(self, request: HttpRequest, obj: Invitation) -> None:
        self.run_service(request, lambda: services.delete_invitation(obj, actor=request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        policy = get_policy()
        for invitation in queryset:
            if invitation.is_pending and policy.can_delete(request.user, invitation):
                self.run_service(
                    request,
                    lambda invitation=invitation: services.delete_invitation(
                        invitation, actor=request.user
                    ),
                )

    def _decide(self, request: HttpRequest, queryset: QuerySet[Invitation], approve: bool) -> None:
        policy = get_policy()
        # Oldest first: when requests compete for one role, the earliest one wins.
        ordered = queryset.order_by("created", "pk")
        allowed = [inv for inv in ordered if policy.can_decide(request.user, inv)]
        skipped = queryset.count() - len(allowed)
        outcome = services.decide_many(allowed, actor=request.user, approve=approve)
        done = len(outcome.pop("done"))
        verb = _("approved") if approve else _("rejected")
        self.message_user(
            request,
            ngettext("%(n)d invitation %(verb)s.", "%(n)d invitations %(verb)s.", done)
            % {"n": done, "verb": verb},
            messages.SUCCESS,
        )
        for code, invitations in outcome.items():
            self.message_user(
                request,
                _("%(n)d not changed (%(code)s).") % {"n": len(invitations), "code": code},
                messages.WARNING,
            )
        if skipped:
            self.message_user(
                request,
                _("%(n)d skipped: you may not decide them.") % {"n": skipped},
                messages.WARNING,
            )

    @admin.action(description=_("Approve selected invitations"), permissions=["change"])
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description=_("Reject selected invitations"), permissions=["change"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._decide(request, queryset, approve=False)


class ReadOnlyAdminMixin:
    """A log: listed and shown, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    fields = ("at", "ok", "status_code", "duration_ms", "error")
    readonly_fields = fields
    extra = 0

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The outbox (e-mail and webhooks), read-only: what was sent, what waits for the relay,
    what failed, and each attempt."""

    list_display = (
        "id",
        "channel",
        "event_kind",
        "recipient_list",
        "status",
        "attempts",
        "next_attempt_at",
    )
    list_filter = ("status", "channel", "event_kind")
    date_hierarchy = "created"
    inlines = (DeliveryAttemptInline,)
    readonly_fields = (
        "channel",
        "event",
        "event_kind",
        "recipient_list",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created",
        "modified",
    )
    exclude = ("payload",)  # the rendered message may hold links meant for its recipient only

    @admin.display(description=_("recipients"))
    def recipient_list(self, obj: Delivery) -> str:
        return ", ".join(obj.recipients)


@admin.register(SalonEvent)
class SalonEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The event log, read-only: who did what to whom, in which salon, when."""

    list_display = ("id", "kind", "salon_id", "user_id", "actor_id", "created_at", "dispatched_at")
    list_filter = ("kind",)
    search_fields = ("=id", "=salon__id", "=user__id", "=actor__id")
    date_hierarchy = "created_at"
    fields = (
        "id",
        "kind",
        "salon_id",
        "user_id",
        "actor_id",
        "created_at",
        "dispatched_at",
        "data",
    )
    readonly_fields = fields
    show_full_result_count = False  # a count of a million-row log on every page is slow

    def get_queryset(self, request: HttpRequest) -> QuerySet[SalonEvent]:
        # What the policy lets this user read, as in the audit endpoint.
        return get_policy().visible_events(request.user, super().get_queryset(request))


class SalonAdmin(ServiceAdminMixin, CascadeThroughServicesMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "created")
    search_fields = ("name",)
    raw_id_fields = ("owner",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            # Through the services (salon lock): a plain save() of a salon deleted meanwhile
            # would insert it again, and a new owner alone would split ownership from the
            # owner's membership. A new owner is a transfer: the previous owner becomes admin.
            fields = {name: getattr(obj, name) for name in form.changed_data if name != "owner"}
            new_owner = form.cleaned_data.get("owner") if "owner" in form.changed_data else None
            stored = type(obj)._default_manager.filter(pk=obj.pk).first() or obj
            if new_owner is not None and not get_policy().can_transfer(request.user, stored):
                self.message_user(
                    request, _("You may not hand this salon to someone else."), messages.ERROR
                )
                setattr(request, _FAILED, True)
                return
            if new_owner is not None and not self.run_service(
                request,
                lambda: services.transfer_ownership(obj, new_owner=new_owner, actor=request.user),
            ):
                return
            if fields:
                self.run_service(request, lambda: services.update_salon(obj, **fields))
        else:
            fields = {
                f.name: getattr(obj, f.name)
                for f in obj._meta.concrete_fields
                if not f.primary_key and f.name not in ("owner", "created", "modified")
            }
            created = services.create_salon(owner=obj.owner, **fields)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.run_service(request, lambda: services.delete_salon(obj, actor=request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for salon in queryset:
            self.run_service(
                request, lambda salon=salon: services.delete_salon(salon, actor=request.user)
            )


class MembershipAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("user", "salon", "role", "created")
    list_filter = ("role",)
    list_select_related = ("user", "salon")
    raw_id_fields = ("user", "salon")
    readonly_fields = ("user", "salon", "role", "created", "modified")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return get_policy().visible_memberships(request.user, super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # memberships come from approved invitations and salon creation

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        if obj is None:
            return allowed
        # The owner's membership cannot be removed while the salon exists: no delete button,
        # and the bulk action refuses a selection that holds it, instead of reporting success.
        return (
            allowed
            and obj.role != roles.owner_role().name
            and get_policy().can_remove_membership(request.user, obj)
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.run_service(request, lambda: services.remove_membership(obj, actor=request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for membership in queryset:
            self.run_service(
                request,
                lambda membership=membership: services.remove_membership(
                    membership, actor=request.user
                ),
            )


# The default models are registered only when they are the active ones; a project that swaps
# them registers its own models (subclassing these admin classes if it likes).
def _active(getter: Any) -> Any:
    try:
        return getter()
    except ImproperlyConfigured:
        return None  # salon_invitations.E006 / E007 say what is wrong


if _active(get_salon_model) is Salon:
    admin.site.register(Salon, SalonAdmin)
if _active(get_membership_model) is Membership:
    admin.site.register(Membership, MembershipAdmin)
