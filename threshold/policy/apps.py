from django.apps import AppConfig


class PolicyConfig(AppConfig):
    name = "threshold.policy"
    label = "policy"
