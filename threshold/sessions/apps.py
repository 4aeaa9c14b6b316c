from django.apps import AppConfig


class SessionsConfig(AppConfig):
    """Signed-in sessions: the model, its store, timeouts, sign-in, step-up and flow tokens.

    Not django.contrib.sessions (which is not installed), whose label this takes.
    """

    name = "threshold.sessions"
    label = "sessions"
