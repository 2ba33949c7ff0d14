#!/usr/bin/env python
import os
import sys

# Commands that only make sense for the local demo run with its settings unless told otherwise.
DEMO_COMMANDS = {"demo", "seed_demo"}


def main() -> None:
    # an empty DJANGO_SETTINGS_MODULE counts as unset (setdefault would keep it, and nothing would load)
    default = "storefront.settings_demo" if sys.argv[1:2] and sys.argv[1] in DEMO_COMMANDS else "storefront.settings"
    os.environ["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE") or default
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
