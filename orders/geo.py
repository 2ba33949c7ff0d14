"""Where an IP address is, from the bundled table (iptocc): no server-side request to any outside service."""

import iptocc


def ip_country(ip: str | None) -> str:
    """The ISO country code of an IP address, or "" when unknown or malformed."""
    if not ip:
        return ""
    try:
        return iptocc.country_code(ip) or ""
    except ValueError:
        return ""
