from django.urls import path

from threshold.sessions import views

app_name = "sessions"
urlpatterns = [
    path("sign-in", views.sign_in_page, name="sign-in"),
    path("sign-out", views.sign_out_page, name="sign-out"),
    path(
        "settings/sessions/sign-out-others",
        views.sign_out_other_sessions,
        name="sign-out-others",
    ),
]
