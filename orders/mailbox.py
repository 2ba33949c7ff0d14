"""A mailbox, however its address is written: what coupon limits, velocity, links and the fraud graph count by."""

# Providers that deliver "a.b@" to "ab@". A +tag is dropped for every provider: most ignore it, and where
# one does not, "ann+shop@" and "ann@" are still one person's to the shop.
_DOTS_IGNORED = {"gmail.com", "googlemail.com"}
_SAME_MAILBOX = {"googlemail.com": "gmail.com"}


def email_key(email: str) -> str:
    """One mailbox, however it is written: case folded, any +tag and the dots its provider ignores removed
    ("J.Doe+shop@GMail.com" -> "jdoe@gmail.com"). Who opens many emails opens many of these."""
    local, _, domain = email.strip().casefold().rpartition("@")
    if not local:
        return email.strip().casefold()
    domain = _SAME_MAILBOX.get(domain, domain)
    local = local.split("+", 1)[0]  # a +tag: ignored by most providers, and one person's either way
    if domain in _DOTS_IGNORED:
        local = local.replace(".", "")
    return f"{local}@{domain}"
