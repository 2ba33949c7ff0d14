import logging

from celery import shared_task

from riskengine.learning import risk_model_train

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, time_limit=1800, soft_time_limit=1500)
def risk_model_retrain() -> str:
    """Weekly: train a new risk model version in shadow when new labels arrived since the newest one."""
    return risk_model_train(actor="celery:risk_model_retrain", only_when_new=True).message
