from django.urls import path

from threshold.web import wellknown

app_name = "web"
urlpatterns = [
    path(".well-known/assetlinks.json", wellknown.assetlinks, name="assetlinks"),
    path(
        ".well-known/apple-app-site-association",
        wellknown.apple_app_site_association,
        name="apple-app-site-association",
    ),
    path(".well-known/webauthn", wellknown.webauthn, name="well-known-webauthn"),
]
