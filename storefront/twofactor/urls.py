from django.urls import path

from storefront.twofactor import views

app_name = "twofactor"

urlpatterns = [
    path("setup/", views.setup, name="setup"),
    path("verify/", views.verify, name="verify"),
]
