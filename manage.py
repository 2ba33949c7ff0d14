#!/usr/bin/env python
import os
import sys

# Commands for the local demo, and the developer's commands that read only the code (the same apps and
# migrations under every settings), run with the demo's settings unless told otherwise: they need no secrets.
DEMO_COMMANDS = {"demo", "seed_demo", "makemigrations", "makemessages", "compilemessages"}


def main() -> None:
    # an empty DJANGO_SETTINGS_MODULE counts as unset (setdefault would keep it, and nothing would load)
    default = "storefront.settings_demo" if sys.argv[1:2] and sys.argv[1] in DEMO_COMMANDS else "storefront.settings"
    os.environ["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE") or default
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - load the settings now: Django would hide why they failed
    except ImproperlyConfigured as exc:
        sys.exit(f"{os.environ['DJANGO_SETTINGS_MODULE']}: ImproperlyConfigured: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
