from django.contrib.auth.views import LoginView, LogoutView
from django.urls import path, reverse_lazy

from storefront.review import views

app_name = "review"

urlpatterns = [
    path("", views.queue, name="queue"),
    path("metrics/", views.metrics_page, name="metrics"),
    path("backtest/", views.backtest_page, name="backtest"),
    path("backtest/<int:job_id>/", views.backtest_job, name="backtest_job"),
    path(
        "login/",
        LoginView.as_view(template_name="riskengine/login.html", next_page=reverse_lazy("review:queue")),
        name="login",
    ),
    path("logout/", LogoutView.as_view(next_page=reverse_lazy("review:login")), name="logout"),
    path("<int:case_id>/", views.case_detail, name="case"),
    path("<int:case_id>/claim/", views.case_claim, name="claim"),
    path("<int:case_id>/approve/", views.case_approve, name="approve"),
    path("<int:case_id>/reject/", views.case_reject, name="reject"),
]
