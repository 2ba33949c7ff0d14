from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class RiskengineConfig(AppConfig):
    name = "riskengine"

    def ready(self) -> None:
        from riskengine.config import risk_config_recheck
        from riskengine.models import FraudLabel, ListEntry, RiskModel, RiskRule, RiskSettings

        def recheck(**kwargs) -> None:
            risk_config_recheck()

        # A write in this process is seen by its next assessment; other processes see it within
        # RISK_CONFIG_RECHECK_SECONDS (the database triggers renew the stamps they read).
        for model in (RiskRule, ListEntry, FraudLabel, RiskSettings, RiskModel):
            post_save.connect(recheck, sender=model, dispatch_uid=f"risk-config-recheck-{model.__name__}")
            post_delete.connect(recheck, sender=model, dispatch_uid=f"risk-config-recheck-delete-{model.__name__}")
