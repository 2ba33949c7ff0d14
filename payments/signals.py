"""What payments tells whoever watches from above (storefront.flow.events emails the merchants). Nothing of the
shop's own story listens here."""

from django.dispatch import Signal

# Sent when a channel's breaker has just opened (payments.health.breaker_record), with `channel` (its
# breaker_open_until set). Never inside a transaction; a receiver must not raise.
breaker_opened = Signal()

# Sent for every notification that passed verification (payments.services.webhook_notice_read), before it is
# acted on, with `provider` and `sent_at` (when the provider made it, or None). Never inside a transaction.
webhook_received = Signal()
