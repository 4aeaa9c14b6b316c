from django.urls import path

from threshold.passkeys import views

app_name = "passkeys"
urlpatterns = [
    # The JSON half of signing in with a passkey; the page is threshold.sessions'.
    path("sign-in/options", views.sign_in_options, name="sign-in-options"),
    path("sign-in/result", views.sign_in_result, name="sign-in-result"),
]
