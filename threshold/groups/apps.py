from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "threshold.groups"
    label = "groups"
