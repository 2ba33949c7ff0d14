from django.core.management.base import BaseCommand, CommandError

from riskengine.learning import risk_model_train


class Command(BaseCommand):
    help = (
        "Train a new version of the risk model on this shop's labelled orders (disputes, early fraud warnings and "
        "review rejections against delivered, undisputed orders) and store it in shadow: recorded with every paid "
        "order, never deciding until promoted in admin or with --activate."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--activate",
            action="store_true",
            help="Make the new version the active model at once (the active one retires).",
        )

    def handle(self, *args, activate: bool, **options):
        result = risk_model_train(actor="manage.py risk_train", activate=activate)
        if result.model is None:
            raise CommandError(result.message)
        self.stdout.write(result.message)
        model = result.model
        self.stdout.write(
            f"Trained on {model.fraud_count} fraud and {model.good_count} good orders decided from "
            f"{model.trained_from:%Y-%m-%d} to {model.trained_to:%Y-%m-%d}; calibration "
            f"{model.metrics.get('calibration')}, average precision {model.metrics.get('average_precision')}, "
            f"Brier score {model.metrics.get('brier')}."
        )
