from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "threshold.audit"
    label = "audit"
