from django.urls import path

from threshold.selfservice import views

app_name = "selfservice"
urlpatterns = [
    path("", views.home, name="home"),
    path("settings", views.settings_page, name="settings"),
    path("settings/profile", views.change_name, name="change-name"),
    path("settings/verify", views.verify_page, name="verify"),
    path("settings/verify/options", views.verify_options, name="verify-options"),
    path("settings/verify/result", views.verify_result, name="verify-result"),
    path("settings/security-methods/add", views.add_page, name="add"),
    path("settings/security-methods/add/options", views.add_options, name="add-options"),
    path("settings/security-methods/add/result", views.add_result, name="add-result"),
    path("settings/security-methods/<int:passkey_id>/rename", views.rename, name="rename"),
    path("settings/security-methods/<int:passkey_id>/remove", views.remove, name="remove"),
    # A Threshold Verify device's nickname (its other pages are threshold.devices').
    path("settings/device-app/<str:device_id>/rename", views.rename_device, name="rename-device"),
]
