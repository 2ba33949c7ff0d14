"""The model that learns from this shop's own outcomes, beside the rules: its labels, training, versions, status.

Labels. An order is fraud when a FraudLabel says so (a dispute, an early fraud warning, a review rejection);
good when it was delivered, carries no fraud label and was paid more than RISK_MODEL_SETTLE_DAYS before the
training (disputes arrive weeks after payment). Every other order (recent, refunded, declined) is left out.
Each labelled order brings the features stored with its latest paid-stage decision (riskengine.features):
what was known when it was decided, never what was learnt since.

Model. A logistic regression on arcsinh-scaled (log-like), standardised features, with balanced class weights,
calibrated on cross-validated predictions (sigmoid; isotonic once there are enough labels for it), so that
its probability means what it says and a feature's pull on an order can be read off (weight times
standardised value: riskengine.scoring). The figures (AUC, precision and recall at the operating threshold)
come from a fit on the older 80% of each class measured on the newest 20%; the stored model is then fitted
on all of them. A new version starts in shadow, staff promote it to active: then its probability times its
points counts like a rule's points. Below RISK_MODEL_MIN_FRAUD fraud or RISK_MODEL_MIN_GOOD good labels
nothing is trained and the rules decide alone; model_status() says why.
"""

import logging
import pickle
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import version as installed_version

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from orders.models import Order, OrderStatus
from riskengine.features import FEATURES
from riskengine.models import FraudLabel, ModelMode, RiskAssessment, RiskConfigVersion, RiskModel, RiskSettings
from riskengine.scoring import model_load

logger = logging.getLogger(__name__)

ALGORITHM = "logistic regression (arcsinh, standardised, balanced), calibrated"
DELIVERED = (OrderStatus.FULFILLED, OrderStatus.SHIPPED)
HOLDOUT_SHARE = 0.2
MIN_PER_CLASS = 5  # whatever the settings say: fewer cannot be split into folds and a hold-out
ISOTONIC_FROM = 1000  # labelled orders (and a tenth of them fraud) before isotonic calibration beats a sigmoid


class ModelError(Exception):
    """A model change that cannot be made (unknown version, already in that mode)."""


@dataclass(frozen=True)
class Example:
    order_id: int
    decided_at: datetime
    features: dict
    fraud: bool


@dataclass(frozen=True)
class TrainingResult:
    model: RiskModel | None  # None: nothing stored, `message` says why
    message: str


def _fraud_label(order: OuterRef, now: datetime) -> Exists:
    return Exists(FraudLabel.objects.filter(order=order, is_fraud=True, created_at__lte=now))


def training_examples(*, now: datetime, settle_days: int) -> list[Example]:
    """One example per labelled order (see the module's docstring), oldest decision first."""
    good = Q(order__status__in=DELIVERED, order__paid_at__lt=now - timedelta(days=settle_days))
    rows = (
        RiskAssessment.objects.filter(stage="paid", created_at__lte=now)
        .exclude(features={})
        .annotate(fraud=_fraud_label(OuterRef("order_id"), now))
        .filter(Q(fraud=True) | good)
        .order_by("created_at", "pk")
        .values_list("order_id", "created_at", "features", "fraud")
    )
    latest: dict[int, Example] = {}
    for order_id, decided_at, features, is_fraud in rows.iterator(chunk_size=5000):
        latest.pop(order_id, None)  # the order's latest paid decision replaces an earlier one, and moves last
        latest[order_id] = Example(order_id, decided_at, features, bool(is_fraud))
    return list(latest.values())


def label_counts(*, now: datetime, settle_days: int) -> tuple[int, int]:
    """(fraud, good) orders the next training would learn from, counted in the database."""
    decided = RiskAssessment.objects.filter(order=OuterRef("pk"), stage="paid", created_at__lte=now)
    orders = Order.objects.filter(Exists(decided.exclude(features={}))).annotate(
        fraud=_fraud_label(OuterRef("pk"), now)
    )
    settled = now - timedelta(days=settle_days)
    return (
        orders.filter(fraud=True).count(),
        orders.filter(fraud=False, status__in=DELIVERED, paid_at__lt=settled).count(),
    )


def _shortfall(fraud: int, good: int) -> str:
    """What is missing before a model can be trained ('' when nothing is)."""
    need_fraud = max(MIN_PER_CLASS, settings.RISK_MODEL_MIN_FRAUD)
    need_good = max(MIN_PER_CLASS, settings.RISK_MODEL_MIN_GOOD)
    missing = []
    if fraud < need_fraud:
        missing.append(f"{fraud} fraud labels of the {need_fraud} needed")
    if good < need_good:
        missing.append(
            f"{good} good orders (delivered, undisputed for {settings.RISK_MODEL_SETTLE_DAYS} days) "
            f"of the {need_good} needed"
        )
    return " and ".join(missing)


def _matrix(examples: list[Example], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.array([[float(e.features.get(name, 0.0)) for name in names] for e in examples], dtype=float)
    return rows, np.array([int(e.fraud) for e in examples])


# scikit-learn is imported by the functions that train, not by this module: it costs about 3 s and 100 MB per
# process, and the web and worker processes that only score never need it (riskengine.scoring).


def _calibration_for(examples: int, fraud: int) -> str:
    """Isotonic calibration follows any monotone shape but needs many labels; a sigmoid is safer below that."""
    return "isotonic" if examples >= ISOTONIC_FROM and fraud >= ISOTONIC_FROM // 10 else "sigmoid"


def _fit(x: np.ndarray, y: np.ndarray, method: str):
    """A logistic regression fitted on these rows, calibrated by `method` on cross-validated predictions."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    frauds = int(y.sum())
    pipeline = make_pipeline(
        FunctionTransformer(np.arcsinh),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )
    folds = StratifiedKFold(n_splits=max(2, min(5, frauds, len(y) - frauds)), shuffle=True, random_state=0)
    return CalibratedClassifierCV(pipeline, method=method, cv=folds, ensemble=False).fit(x, y)


def _holdout(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """The older 80% of each class to fit, the newest 20% of each class to measure. Per class, because labels
    arrive late and unevenly: good ones only after the settle period, fraud ones as soon as a dispute comes."""
    fit, held = [], []
    for fraud in (True, False):
        chosen = [e for e in examples if e.fraud == fraud]  # oldest first
        cut = len(chosen) - max(1, round(len(chosen) * HOLDOUT_SHARE))
        fit += chosen[:cut]
        held += chosen[cut:]
    return fit, held


def operating_threshold(points: int) -> float:
    """The probability at which the model alone reaches the review threshold (0.5 when it never can)."""
    thresholds = RiskSettings.objects.filter(pk=1).first() or RiskSettings()
    share = thresholds.review_threshold / points if points else 2.0
    return round(share, 4) if share <= 1 else 0.5


def _measure(model, x: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    probability = model.predict_proba(x)[:, 1]
    flagged = probability >= threshold
    caught = int((flagged & (y == 1)).sum())
    return {
        "auc": round(float(roc_auc_score(y, probability)), 4),
        "average_precision": round(float(average_precision_score(y, probability)), 4),
        "brier": round(float(brier_score_loss(y, probability)), 4),
        "threshold": threshold,
        "precision": round(caught / int(flagged.sum()), 4) if flagged.any() else None,
        "recall": round(caught / int(y.sum()), 4),
        "holdout_fraud": int(y.sum()),
        "holdout_good": int((y == 0).sum()),
    }


def _parameters(model) -> dict:
    """What scoring reads (riskengine.scoring): the fitted scaling, weights and calibration."""
    (pair,) = model.calibrated_classifiers_  # ensemble=False: one estimator fitted on all rows, one calibrator
    (calibrator,) = pair.calibrators
    _, scaler, regression = (step for _, step in pair.estimator.steps)
    if hasattr(calibrator, "a_"):
        calibration = {"method": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)}
    else:
        xs, ys = calibrator.X_thresholds_, calibrator.y_thresholds_
        calibration = {"method": "isotonic", "x": [float(v) for v in xs], "y": [float(v) for v in ys]}
    return {
        "center": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "weights": [float(v) for v in regression.coef_[0]],
        "intercept": float(regression.intercept_[0]),
        "calibration": calibration,
    }


def _checked_parameters(model, x: np.ndarray) -> dict:
    """The parameters, once they give the fitted model's own probabilities on these rows (else ModelError)."""
    parameters = _parameters(model)
    scorer = model_load(RiskModel(version=0, feature_names=list(FEATURES), parameters=parameters))
    if not np.allclose(scorer.probabilities(x), model.predict_proba(x)[:, 1], atol=1e-9):
        raise ModelError("the fitted parameters do not reproduce the model's probabilities; nothing stored")
    return parameters


def _lock_models() -> None:
    """Serialise changes of mode (inside a transaction): two promotions at once would otherwise both retire the
    model active when they began, and the second would trip the one-active constraint. The "model" change
    stamp's row is the lock; its trigger writes it anyway."""
    RiskConfigVersion.objects.select_for_update().filter(part="model").first()


def risk_model_train(
    *, actor: str, now: datetime | None = None, activate: bool = False, only_when_new: bool = False
) -> TrainingResult:
    """Train a new model version on the labelled orders and store it in shadow (retiring the previous shadow
    one), or active with `activate`. With too few labels nothing is stored and the result says why;
    `only_when_new` (the weekly task) also stores nothing when the labels are those of the newest version."""
    now = now or timezone.now()
    examples = training_examples(now=now, settle_days=settings.RISK_MODEL_SETTLE_DAYS)
    fraud = sum(e.fraud for e in examples)
    good = len(examples) - fraud
    shortfall = _shortfall(fraud, good)
    if shortfall:
        return TrainingResult(None, f"Not trained: {shortfall}. The rules decide alone.")
    newest = RiskModel.objects.first()
    window = (min(e.decided_at for e in examples), max(e.decided_at for e in examples))
    unchanged = newest is not None and (newest.fraud_count, newest.good_count, newest.trained_to) == (
        fraud,
        good,
        window[1],
    )
    if only_when_new and unchanged:
        return TrainingResult(None, f"Not trained: no new labels since model v{newest.version}.")
    active = RiskModel.objects.filter(mode=ModelMode.ACTIVE).first()
    points = active.points if active else RiskModel._meta.get_field("points").default
    threshold = operating_threshold(points)
    fit, held = _holdout(examples)
    x_fit, y_fit = _matrix(fit, FEATURES)
    x_held, y_held = _matrix(held, FEATURES)
    method = _calibration_for(len(examples), fraud)
    metrics = _measure(_fit(x_fit, y_fit, method), x_held, y_held, threshold) | {"calibration": method}
    x_all, y_all = _matrix(examples, FEATURES)
    final = _fit(x_all, y_all, method)
    parameters = _checked_parameters(final, x_all)
    with transaction.atomic():
        _lock_models()
        RiskModel.objects.filter(mode=ModelMode.SHADOW).update(
            mode=ModelMode.RETIRED, mode_changed_at=now, mode_changed_by=actor
        )
        model = RiskModel.objects.create(
            created_by=actor,
            algorithm=ALGORITHM,
            library=f"scikit-learn {installed_version('scikit-learn')}",
            feature_names=list(FEATURES),
            parameters=parameters,
            estimator=pickle.dumps(final, protocol=pickle.HIGHEST_PROTOCOL),
            trained_from=window[0],
            trained_to=window[1],
            fraud_count=fraud,
            good_count=good,
            metrics=metrics,
            points=points,
        )
        if activate:
            model = risk_model_promote(version=model.version, actor=actor, now=now)
    logger.info("risk model v%s trained by %s: %s", model.version, actor, metrics)
    return TrainingResult(model, f"Model v{model.version} stored ({model.mode}): {describe_metrics(metrics)}.")


def describe_metrics(metrics: dict) -> str:
    precision = "—" if metrics.get("precision") is None else f"{metrics['precision']:.2f}"
    return (
        f"AUC {metrics['auc']:.3f} on the newest {metrics['holdout_fraud']} fraud and {metrics['holdout_good']} "
        f"good orders; at probability {metrics['threshold']:.2f} precision {precision}, "
        f"recall {metrics['recall']:.2f}"
    )


def risk_model_promote(*, version: int, actor: str, now: datetime | None = None) -> RiskModel:
    """Make this version the active model (from shadow, or back from retirement); the active one retires."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_models()
        model = RiskModel.objects.filter(version=version).first()
        if model is None:
            raise ModelError(f"There is no model v{version}.")
        if model.mode == ModelMode.ACTIVE:
            raise ModelError(f"Model v{version} is already active.")
        RiskModel.objects.filter(mode=ModelMode.ACTIVE).update(
            mode=ModelMode.RETIRED, mode_changed_at=now, mode_changed_by=actor
        )
        RiskModel.objects.filter(pk=version).update(mode=ModelMode.ACTIVE, mode_changed_at=now, mode_changed_by=actor)
    logger.info("risk model v%s promoted to active by %s", version, actor)
    model.refresh_from_db()
    return model


def risk_model_retire(*, version: int, actor: str, now: datetime | None = None) -> RiskModel:
    """Stop using this version (active or shadow): without an active model the rules decide alone."""
    now = now or timezone.now()
    with transaction.atomic():
        _lock_models()
        updated = (
            RiskModel.objects.filter(pk=version)
            .exclude(mode=ModelMode.RETIRED)
            .update(mode=ModelMode.RETIRED, mode_changed_at=now, mode_changed_by=actor)
        )
    if not updated:
        raise ModelError(f"There is no model v{version} in use.")
    logger.info("risk model v%s retired by %s", version, actor)
    return RiskModel.objects.get(pk=version)


def model_status(*, now: datetime | None = None) -> str:
    """One or two sentences for staff: which model counts, which runs in shadow, or why the rules decide alone."""
    in_use = {m.mode: m for m in RiskModel.objects.filter(mode__in=[ModelMode.ACTIVE, ModelMode.SHADOW])}
    active, shadow = in_use.get(ModelMode.ACTIVE), in_use.get(ModelMode.SHADOW)
    said = []
    if active is not None:
        said.append(
            f"Model v{active.version} is active: it adds up to {active.points} points to the rules' score "
            f"({describe_metrics(active.metrics)})."
        )
    if shadow is not None:
        said.append(
            f"Model v{shadow.version} runs in shadow ({describe_metrics(shadow.metrics)}): the points it would "
            "add are recorded with the paid orders (shadow reasons) and never count until it is promoted in admin."
        )
    if active is None and shadow is None:
        fraud, good = label_counts(now=now or timezone.now(), settle_days=settings.RISK_MODEL_SETTLE_DAYS)
        shortfall = _shortfall(fraud, good)
        if shortfall:
            said.append(f"No model yet: {shortfall}. The rules decide alone.")
        elif RiskModel.objects.exists():
            said.append("No model in use (every version is retired): the rules decide alone.")
        else:
            said.append(
                f"No model yet, though the labels suffice ({fraud} fraud, {good} good): the weekly retraining or "
                "`manage.py risk_train` will train one. The rules decide alone until then."
            )
    elif active is None:
        said.append("No model is active: the rules decide alone.")
    return " ".join(said)
