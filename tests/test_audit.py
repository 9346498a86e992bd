"""The audit endpoint (``GET api/salon_events``), the event admin, retention and the relay's
commands and settings checks."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from salon_invitations import services
from salon_invitations.checks import check_settings
from salon_invitations.models import Delivery, DeliveryAttempt, SalonEvent
from salon_invitations.policies import RolePolicy
from tests import factories

pytestmark = pytest.mark.django_db

EVENTS = "/api/salon_events"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def logged(**filters: Any) -> list[int]:
    return list(SalonEvent.objects.filter(**filters).order_by("id").values_list("id", flat=True))


@pytest.fixture
def history(salon, other_salon, owner, admin_member, requester):
    """A request to each salon by ``requester``, one approved; another user's request to B."""
    mine = services.create_invitation(user=requester, salon=salon, role="seller")
    services.approve_invitation(mine, actor=owner)
    services.create_invitation(user=requester, salon=other_salon, role="mechanic")
    stranger = factories.make_user("stranger")
    services.create_invitation(user=stranger, salon=other_salon, role="seller")
    return stranger


def test_a_manager_sees_their_salons_events_and_no_other_salons(api, history, salon, owner):
    assert ids(api(owner).get(EVENTS)) == logged(salon=salon)
    assert ids(api(owner).get(EVENTS)), "the salon has events"


def test_an_admin_member_sees_the_salon_they_manage(api, history, salon, admin_member):
    assert ids(api(admin_member).get(EVENTS)) == logged(salon=salon)


def test_a_user_sees_the_events_about_them_in_any_salon(api, history, requester, other_salon):
    shown = ids(api(requester).get(EVENTS))
    assert shown == logged(user=requester)
    assert set(logged(salon=other_salon, user=requester)) <= set(shown)
    # Not the other requester's request to the same salon.
    assert not set(shown) & set(logged(user=history))


def test_a_member_who_does_not_manage_sees_only_their_own(api, history, salon, seller_member):
    assert ids(api(seller_member).get(EVENTS)) == logged(user=seller_member)


def test_staff_see_everything_and_anonymous_nothing(api, history, staff):
    assert ids(api(staff).get(EVENTS)) == logged()
    assert api().get(EVENTS).status_code in (401, 403)


def test_filtering_by_another_salon_shows_nothing_more(api, history, owner, other_salon):
    assert ids(api(owner).get(EVENTS, {"salon": other_salon.pk})) == []


def test_filters_since_salon_and_kind(api, history, salon, staff):
    everything = logged()
    assert ids(api(staff).get(EVENTS, {"since": everything[2]})) == everything[3:]
    assert ids(api(staff).get(EVENTS, {"salon": salon.pk})) == logged(salon=salon)
    assert ids(api(staff).get(EVENTS, {"kind": "invitation.approved"})) == logged(
        kind="invitation.approved"
    )
    assert ids(api(staff).get(EVENTS, {"kind": "membership.*"})) == logged(
        kind__startswith="membership."
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "abc"}, "since"),
        ({"since": "-1"}, "since"),
        ({"since": "1.5"}, "since"),
        ({"since": str(2**70)}, "since"),
        ({"since": str(2**63)}, "since"),
        ({"since": "\uff11"}, "since"),
        ({"salon": "x"}, "salon"),
        ({"salon": str(2**63)}, "salon"),
        ({"salon": str(-(2**64))}, "salon"),
        ({"kind": "invitation.approved; drop"}, "kind"),
        ({"kind": "*"}, "kind"),
        ({"kind": "x" * 65}, "kind"),
    ],
)
def test_bad_filters_are_a_400_naming_the_field(api, history, staff, params, field):
    response = api(staff).get(EVENTS, params)
    assert response.status_code == 400
    assert field in response.json()


def test_pages_follow_the_cursor_in_ascending_order(api, history, staff):
    seen: list[int] = []
    url: str | None = f"{EVENTS}?page_size=2"
    while url:
        response = api(staff).get(url)
        page = ids(response)
        assert len(page) <= 2
        seen += page
        url = response.json()["next"]
    assert seen == logged()


def test_a_row_carries_what_the_frame_carries(api, history, salon, owner, requester):
    row = SalonEvent.objects.get(kind="invitation.approved")
    (shown,) = api(owner).get(EVENTS, {"kind": "invitation.approved"}).json()["results"]
    assert shown == {
        "id": row.id,
        "type": "invitation.approved",
        "salon": salon.pk,
        "user": requester.pk,
        "actor": owner.pk,
        "created_at": shown["created_at"],
        "data": row.data,
    }
    assert shown["data"]["invitation"]["status"] == "approved"


def test_the_list_costs_the_same_queries_for_1_or_40_events(api, staff, owner, salon):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api(owner).get(EVENTS).status_code == 200
        return len(captured)

    few = queries()
    for n in range(20):
        invitation = services.create_invitation(
            user=factories.make_user(f"applicant{n}"), salon=salon, role="seller"
        )
        services.reject_invitation(invitation, actor=owner)
    assert SalonEvent.objects.filter(salon=salon).count() > 40
    assert queries() == few


def test_events_outlive_their_salon_and_user(api, history, staff, other_salon):
    before = logged(salon=other_salon)
    services.delete_salon(other_salon)
    assert set(before) <= set(logged())
    assert ids(api(staff).get(EVENTS, {"salon": before and other_salon.pk})) == logged(
        salon_id=other_salon.pk
    )


# Retention -----------------------------------------------------------------------------------


def test_prune_removes_old_events_with_their_deliveries(history, settings):
    old = SalonEvent.objects.order_by("id").first()
    delivery = Delivery.objects.create(channel="webhook", event=old, target="https://x", payload={})
    DeliveryAttempt.objects.create(delivery=delivery, ok=False, error="boom")
    SalonEvent.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    out = StringIO()
    call_command("prune_events", "--older-than", "30", stdout=out)
    assert out.getvalue().strip() == "1 event(s) older than 30 day(s) deleted."
    assert not SalonEvent.objects.filter(pk=old.pk).exists()
    assert not Delivery.objects.filter(pk=delivery.pk).exists()
    assert not DeliveryAttempt.objects.exists()
    assert SalonEvent.objects.exists()


@pytest.mark.parametrize("days", ["0", "-3", "abc", "99999999"])
def test_prune_refuses_a_bad_age(days):
    with pytest.raises(CommandError):
        call_command("prune_events", "--older-than", days, stdout=StringIO())


def test_prune_needs_an_age():
    with pytest.raises(CommandError):
        call_command("prune_events", stdout=StringIO())


def test_deliver_events_relays_what_was_left_undispatched(history):
    SalonEvent.objects.update(dispatched_at=None, created_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()
    call_command("deliver_events", stdout=out)
    assert out.getvalue().strip() == f"{SalonEvent.objects.count()} event(s) relayed."
    assert not SalonEvent.objects.filter(dispatched_at__isnull=True).exists()
    out = StringIO()
    call_command("deliver_events", stdout=out)
    assert out.getvalue().strip() == "0 event(s) relayed."


def test_deliver_webhooks_reports_what_it_sent():
    out = StringIO()
    call_command("deliver_webhooks", stdout=out)
    assert out.getvalue().strip() == "0 webhook(s) delivered, 0 not delivered (retried later)."
    with pytest.raises(CommandError):
        call_command("deliver_webhooks", "--limit", "0", stdout=StringIO())


# The admin -----------------------------------------------------------------------------------


@pytest.fixture
def root_client(client):
    client.force_login(factories.make_user("root", is_staff=True, is_superuser=True))
    return client


def test_the_event_admin_lists_and_shows_but_never_changes(root_client, history):
    event = SalonEvent.objects.order_by("id").first()
    changelist = reverse("admin:salon_invitations_salonevent_changelist")
    assert root_client.get(changelist).status_code == 200
    assert root_client.get(changelist, {"q": str(event.pk)}).status_code == 200
    assert root_client.get(changelist, {"q": "not a number"}).status_code == 200
    change = reverse("admin:salon_invitations_salonevent_change", args=[event.pk])
    page = root_client.get(change)
    assert page.status_code == 200
    assert event.kind in page.content.decode()
    before = SalonEvent.objects.get(pk=event.pk)
    root_client.post(change, {"kind": "invitation.deleted"})
    assert SalonEvent.objects.get(pk=event.pk).kind == before.kind
    add = reverse("admin:salon_invitations_salonevent_add")
    assert root_client.get(add).status_code == 403
    delete = reverse("admin:salon_invitations_salonevent_delete", args=[event.pk])
    assert root_client.post(delete, {"post": "yes"}).status_code == 403
    assert SalonEvent.objects.filter(pk=event.pk).exists()


def test_the_delivery_admin_shows_each_attempt(root_client, history):
    event = SalonEvent.objects.order_by("id").first()
    delivery = Delivery.objects.create(
        channel="webhook", event=event, target="https://hooks.example.com/x", payload={}
    )
    DeliveryAttempt.objects.create(delivery=delivery, ok=False, status_code=503, error="HTTP 503")
    DeliveryAttempt.objects.create(delivery=delivery, ok=True, status_code=200)
    page = root_client.get(reverse("admin:salon_invitations_delivery_change", args=[delivery.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "HTTP 503" in text and "https://hooks.example.com/x" in text
    assert text.count("503") >= 1


# Checks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "webhooks",
    [
        "https://x",
        [{"url": "ftp://x", "secret": "s"}],
        [{"url": "https://x", "secret": ""}],
        [{"url": "https://x"}],
        [{"url": "https://x", "secret": "s", "events": "invitation.*"}],
        [{"url": "https://x", "secret": "s", "events": [""]}],
        [{"url": "https://x", "secret": "s", "colour": "red"}],
        [{"url": "https://x", "secret": "s"}, {"url": "https://x", "secret": "t"}],
        [{"url": "https://x/" + "a" * 300, "secret": "s"}],
        [{"url": "http://", "secret": "s"}],
        [{"url": "http://127.0.0.1:99999/x", "secret": "s"}],
        [{"url": "http://127.0.0.1:port/x", "secret": "s"}],
        [{"url": " https://x", "secret": "s"}],
        [{"url": "HTTPS://x", "secret": "s"}, {"url": "HTTPS://x", "secret": "s"}],
        ["https://x"],
    ],
)
def test_malformed_webhooks_are_e015(settings, webhooks):
    settings.SALON_INVITATIONS = {"WEBHOOKS": webhooks}
    assert [e.id for e in check_settings()] == ["salon_invitations.E015"]


def test_e015_never_repeats_the_url(settings):
    settings.SALON_INVITATIONS = {"WEBHOOKS": [{"url": "ftp://user:hunter2@x", "secret": "s"}]}
    (error,) = check_settings()
    assert "hunter2" not in error.msg


def test_well_formed_webhooks_pass(settings):
    settings.SALON_INVITATIONS = {
        "WEBHOOKS": [
            {"url": "https://a.example.com/h", "secret": "s", "events": ["invitation.*"]},
            {"url": "http://127.0.0.1:9000/h", "secret": "t"},
        ],
        "WEBHOOK_DELIVERY": "celery",
        "WEBHOOK_TIMEOUT": 10,
        "REPLAY_LIMIT": 50,
    }
    assert check_settings() == []


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        ("WEBHOOK_DELIVERY", "later", "E005"),
        ("WEBHOOK_TIMEOUT", 0, "E012"),
        ("WEBHOOK_TIMEOUT", "3", "E012"),
        ("REPLAY_LIMIT", 0, "E010"),
        ("REPLAY_LIMIT", True, "E010"),
    ],
)
def test_other_new_settings_are_checked(settings, key, value, code):
    settings.SALON_INVITATIONS = {key: value}
    assert [e.id for e in check_settings()] == [f"salon_invitations.{code}"]


def test_webhook_endpoints_match_by_pattern_and_an_empty_list_pauses_one(settings):
    from salon_invitations.notifications import webhook_endpoints

    everything = {"url": "https://a.example.com", "secret": "s"}
    invitations = {"url": "https://b.example.com", "secret": "s", "events": ["invitation.*"]}
    paused = {"url": "https://c.example.com", "secret": "s", "events": []}
    settings.SALON_INVITATIONS = {"WEBHOOKS": [everything, invitations, paused]}
    assert webhook_endpoints("invitation.approved") == [everything, invitations]
    assert webhook_endpoints("membership.created") == [everything]


@pytest.mark.parametrize("position", ["abc", "", "1.5", "%00", "-1", "1" * 40, "٣"])
def test_a_forged_cursor_is_a_404_not_a_500(api, history, staff, position):
    import base64
    from urllib.parse import quote

    cursor = base64.b64encode(f"p={quote(position)}".encode()).decode()
    response = api(staff).get(EVENTS, {"cursor": cursor})
    assert response.status_code == 404, response.content
    assert response.json()["detail"] == "Invalid cursor"


def test_a_manager_pages_forwards_and_back_through_their_events(api, history, salon, owner):
    for n in range(5):
        services.create_invitation(
            user=factories.make_user(f"later{n}"), salon=salon, role="mechanic"
        )
    expected = sorted(set(logged(salon=salon)) | set(logged(user=owner)))
    pages: list[list[int]] = []
    url: str | None = f"{EVENTS}?page_size=2"
    response = None
    while url:
        response = api(owner).get(url)
        pages.append(ids(response))
        url = response.json()["next"]
    assert [pk for page in pages for pk in page] == expected
    assert all(len(page) == 2 for page in pages[:-1])
    back: list[list[int]] = []
    url = response.json()["previous"]
    while url:
        response = api(owner).get(url)
        back.append(ids(response))
        url = response.json()["previous"]
    assert back == pages[-2::-1]


def test_a_manager_reads_a_page_in_a_bounded_number_of_queries(api, salon, owner, other_salon):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.create_invitation(user=factories.make_user("a1"), salon=salon, role="seller")
    with CaptureQueriesContext(connection) as captured:
        assert api(owner).get(EVENTS).status_code == 200
    branch_reads = [q["sql"] for q in captured if "ORDER BY" in q["sql"] and "LIMIT" in q["sql"]]
    # One read per branch (own events, the managed salon), then the page itself.
    assert len(branch_reads) == 3, branch_reads


class OwnEventsOnly(RolePolicy):
    def visible_events(self, user, queryset):
        return queryset.filter(user=user)


def test_a_policy_that_narrows_visible_events_is_obeyed(api, history, salon, owner, settings):
    settings.SALON_INVITATIONS = {"PERMISSION_POLICY": "tests.test_audit.OwnEventsOnly"}
    assert ids(api(owner).get(EVENTS)) == logged(user=owner)
    assert ids(api(owner).get(EVENTS, {"salon": salon.pk})) == logged(user=owner, salon=salon)


def test_the_event_admin_shows_what_the_policy_lets_its_user_read(client, history, settings):
    viewer = factories.make_user("viewer", is_staff=True, is_superuser=True)
    client.force_login(viewer)
    settings.SALON_INVITATIONS = {"PERMISSION_POLICY": "tests.test_audit.OwnEventsOnly"}
    changelist = reverse("admin:salon_invitations_salonevent_changelist")
    assert client.get(changelist).context["cl"].result_count == 0
    settings.SALON_INVITATIONS = {}
    assert client.get(changelist).context["cl"].result_count == SalonEvent.objects.count()
