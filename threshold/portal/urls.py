from django.urls import path

from threshold.portal import views

app_name = "portal"
urlpatterns = [
    path("admin/", views.home, name="home"),
    path("admin/people", views.people_list, name="people"),
    path("admin/people/invite", views.invite, name="invite"),
    path("admin/people/import", views.import_people, name="import"),
    path("admin/people/<int:user_id>", views.person, name="person"),
    path(
        "admin/people/<int:user_id>/passkeys/<int:passkey_id>/remove",
        views.remove_passkey,
        name="remove-passkey",
    ),
    path(
        "admin/people/<int:user_id>/devices/<str:device_id>/remove",
        views.remove_device,
        name="remove-device",
    ),
    path("admin/people/<int:user_id>/fallback/reset", views.reset_fallback, name="reset-fallback"),
    path("admin/people/<int:user_id>/sessions/end", views.end_sessions, name="end-sessions"),
    path("admin/people/<int:user_id>/recovery", views.issue_recovery, name="recovery"),
    path("admin/people/<int:user_id>/lock", views.lock, name="lock"),
    path("admin/people/<int:user_id>/unlock", views.unlock, name="unlock"),
    path("admin/people/<int:user_id>/deactivate", views.deactivate, name="deactivate"),
    path("admin/people/<int:user_id>/reactivate", views.reactivate, name="reactivate"),
    path("admin/people/<int:user_id>/role", views.set_role, name="role"),
    path("admin/people/<int:user_id>/invite", views.resend_invite, name="resend-invite"),
    path(
        "admin/people/<int:user_id>/invites/<int:invite_id>/revoke",
        views.revoke_invite,
        name="revoke-invite",
    ),
    path("admin/audit", views.audit, name="audit"),
    path("admin/audit/export.csv", views.audit_export, {"kind": "csv"}, name="audit-csv"),
    path("admin/audit/export.json", views.audit_export, {"kind": "json"}, name="audit-json"),
    path("admin/readiness", views.readiness_page, name="readiness"),
    path("admin/readiness/<slug:figure>.csv", views.readiness_csv, name="readiness-csv"),
    path("admin/policy", views.policy_page, name="policy"),
    path("admin/authenticators", views.authenticators_page, name="authenticators"),
    path("admin/groups", views.groups_page, name="groups"),
    path("admin/groups/<int:group_id>", views.group_page, name="group"),
    path("admin/groups/<int:group_id>/members", views.group_add_member, name="group-add-member"),
    path(
        "admin/groups/<int:group_id>/members/<int:user_id>/remove",
        views.group_remove_member,
        name="group-remove-member",
    ),
    path("admin/groups/<int:group_id>/remove", views.group_remove, name="group-remove"),
    path("admin/groups/<int:group_id>/rules", views.group_rules, name="group-rules"),
    path("admin/apps", views.apps_page, name="apps"),
    path("admin/apps/<int:app_id>", views.app_page, name="app"),
    path("admin/apps/<int:app_id>/secret", views.app_rotate_secret, name="app-rotate-secret"),
    path("admin/apps/<int:app_id>/change", views.app_change, name="app-change"),
    path("admin/apps/<int:app_id>/assign", views.app_assign, name="app-assign"),
    path("admin/apps/<int:app_id>/remove", views.app_remove, name="app-remove"),
]
