from django.apps import AppConfig
from django.conf import settings


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments"

    # Hooks of ``manage.py consume`` (eventstore knows no context, so it calls them by name).

    def consumer_started(self, contexts: list[str]) -> None:
        """Run charges on a pool of threads instead of the consumer's one thread (PAYMENT_CHARGE_WORKERS)."""
        from .charge_pool import charge_pool
        from .public import CONTEXT

        if CONTEXT in contexts:
            charge_pool.start(workers=int(getattr(settings, "PAYMENT_CHARGE_WORKERS", 8)))

    def consumer_stopped(self) -> None:
        """Finish the charges in hand before the process exits, for at most one charge attempt's time.

        One attempt may wait PAYMENT_TIMEOUT for the charge, then as long for the ledger's
        answer; what is left then stays PENDING/UNKNOWN for ``payments.tasks.resume_payments``.
        """
        from .charge_pool import charge_pool

        charge_pool.stop(timeout=2 * float(settings.PAYMENT_TIMEOUT) + 1.0)
