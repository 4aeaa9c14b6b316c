from django.urls import path

from threshold.conformance import views

app_name = "conformance"
urlpatterns = [
    path("attestation/options", views.attestation_options, name="attestation-options"),
    path("attestation/result", views.attestation_result, name="attestation-result"),
    path("assertion/options", views.assertion_options, name="assertion-options"),
    path("assertion/result", views.assertion_result, name="assertion-result"),
]
