from django.apps import AppConfig


class EnrollmentConfig(AppConfig):
    name = "threshold.enrollment"
    label = "enrollment"
