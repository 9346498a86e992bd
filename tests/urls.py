from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("salon_invitations.urls.seed")),
    path("router/", include("salon_invitations.urls.router")),
]
