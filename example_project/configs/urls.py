"""HTTP routes. No trailing slashes on the API, as in the original service."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.dashboard import views as dashboard
from apps.invites.views import invite_page
from apps.users import views as users
from salon_invitations.urls import (
    event_patterns,
    invitation_patterns,
    membership_patterns,
    salon_patterns,
)

urlpatterns = [
    # The dashboard: log in, then requests, invites and members, updated live.
    path("", dashboard.index, name="dashboard"),
    path("login", dashboard.log_in, name="dashboard-login"),
    path("logout", dashboard.log_out, name="dashboard-logout"),
    path("dashboard/token", dashboard.token, name="dashboard-token"),
    path("dashboard/sections", dashboard.sections, name="dashboard-sections"),
    path("admin/", admin.site.urls),
    # The page behind the link of invite e-mails (SALON_INVITATIONS["INVITE_URL"]).
    path("invite/<str:token>", invite_page, name="invite-page"),
    # Authentication (JWT) and accounts.
    path("api/auth", users.LoginView.as_view(), name="auth"),
    path("api/auth/refresh", users.RefreshView.as_view(), name="auth-refresh"),
    path("api/auth/logout", users.LogoutView.as_view(), name="auth-logout"),
    path("api/user/registration", users.RegistrationView.as_view(), name="user-registration"),
    path("api/user/me", users.MeView.as_view(), name="user-me"),
    # The package's endpoints at the original service's paths.
    *salon_patterns("api/auto_salon"),
    *membership_patterns("api/salon_role"),
    *event_patterns("api/salon_events"),
    *invitation_patterns("api/invitation_to_auto_salon"),
    # OpenAPI 3 schema and Swagger UI.
    path("api/doc", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/doc/schema", SpectacularAPIView.as_view(), name="schema"),
    # Uploaded files (served by Django only while DEBUG is on).
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]
