from django.urls import path
from django.views.generic.base import RedirectView

from threshold.help import views

app_name = "help"
urlpatterns = [
    path("help", views.index, name="index"),
    path("help/", RedirectView.as_view(pattern_name="help:index", permanent=True)),
    path("help/errors", views.errors, name="errors"),
    path("help/guide", views.guide_index, name="guide-index"),
    path("help/guide/<str:platform>", views.guide, name="guide"),
    # The guide's first address, from when it needed signing in.
    path("settings/guide", RedirectView.as_view(pattern_name="help:guide-index", permanent=True)),
    path(
        "settings/guide/<str:platform>",
        RedirectView.as_view(pattern_name="help:guide", permanent=True),
    ),
]
