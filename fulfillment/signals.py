"""What fulfillment tells whoever watches from above (storefront.metrics). Nothing of the shop's own story
listens here: what follows a delivery is written in the flow layer."""

from django.dispatch import Signal

# Sent inside the delivering transaction when an order's digital goods are all delivered (it moved to fulfilled
# or to awaiting shipment), with `order` (locked, paid_at set) and `delivered_at`. A receiver writes nothing and
# defers whatever it does with transaction.on_commit: the delivery may still roll back.
order_delivered = Signal()
# Sent inside the transaction that moved a product's pool to or below its low-stock threshold (once per crossing,
# as the merchants' low-stock email), with `product_id`, `available` and `threshold`. The same rule for receivers.
stock_low = Signal()
