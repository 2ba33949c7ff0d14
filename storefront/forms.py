from django import forms
from django.utils.translation import gettext_lazy as _
from django_countries import countries

from orders.services import ShippingAddress


class CountryField(forms.ChoiceField):
    """A country chosen from a list (django-countries), kept as its ISO code; "gb" counts as "GB"."""

    def to_python(self, value):
        return super().to_python(value).strip().upper()


class CheckoutForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"),
        help_text=_("Your order link is sent here."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    ship_name = forms.CharField(label=_("Full name"), max_length=200, required=False)
    ship_line1 = forms.CharField(label=_("Address"), max_length=200, required=False)
    ship_line2 = forms.CharField(label=_("Address line 2"), max_length=200, required=False)
    ship_city = forms.CharField(label=_("City"), max_length=100, required=False)
    ship_postal_code = forms.CharField(label=_("Postal code"), max_length=20, required=False)
    ship_country = CountryField(label=_("Country"), choices=lambda: [("", "—"), *countries], required=False)

    ADDRESS_FIELDS = ("ship_name", "ship_line1", "ship_line2", "ship_city", "ship_postal_code", "ship_country")
    REQUIRED_ADDRESS_FIELDS = ("ship_name", "ship_line1", "ship_city", "ship_postal_code", "ship_country")

    def __init__(self, *args, requires_shipping: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.requires_shipping = requires_shipping
        if not requires_shipping:
            for name in self.ADDRESS_FIELDS:
                del self.fields[name]
        else:
            for name in self.REQUIRED_ADDRESS_FIELDS:
                self.fields[name].required = True

    def shipping_address(self) -> ShippingAddress | None:
        if not self.requires_shipping:
            return None
        d = self.cleaned_data
        return ShippingAddress(
            name=d["ship_name"],
            line1=d["ship_line1"],
            line2=d.get("ship_line2", ""),
            city=d["ship_city"],
            postal_code=d["ship_postal_code"],
            country=d["ship_country"].upper(),
        )


class OrderLookupForm(forms.Form):
    email = forms.EmailField(
        label=_("Email address"),
        help_text=_("The one you gave at checkout. We email your orders' links there."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
