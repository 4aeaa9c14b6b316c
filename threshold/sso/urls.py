from django.urls import path

from threshold.sso import firstparty, introspection, views

app_name = "sso"
urlpatterns = [
    path(".well-known/openid-configuration", views.discovery, name="discovery"),
    path("jwks", views.jwks, name="jwks"),
    path("authorize", views.authorize, name="authorize"),
    path("authorize/sign-in", views.sign_in_again, name="sign-in-again"),
    path("authorize/sign-in/options", views.sign_in_again_options, name="sign-in-again-options"),
    path("authorize/sign-in/result", views.sign_in_again_result, name="sign-in-again-result"),
    path("authorize-challenge", firstparty.authorize_challenge, name="authorize-challenge"),
    path("token", views.token, name="token"),
    path("userinfo", views.userinfo, name="userinfo"),
    path("revoke", views.revoke, name="revoke"),
    path("end-session", views.end_session, name="end-session"),
    path("settings/apps/<str:app_id>/sign-out", views.sign_out_of_app, name="sign-out-of-app"),
    path("introspect", introspection.introspect, name="introspect"),
]
