from django.apps import AppConfig


class ConformanceConfig(AppConfig):
    name = "threshold.conformance"
    label = "conformance"
