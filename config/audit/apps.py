from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit app: a management command and a periodic task, no models."""

    name = "config.audit"
    label = "audit"
    verbose_name = "Audit"
