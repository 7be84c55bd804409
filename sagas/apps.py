from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"

    def ready(self) -> None:
        # The recorder's implementation follows the database backend: chosen once, here.
        from . import recorder

        recorder.select()
