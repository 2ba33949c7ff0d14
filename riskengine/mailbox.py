"""A mailbox, however its address is written: what velocity, links and the fraud graph count by (orders.mailbox,
shared with the coupon limits)."""

from orders.mailbox import email_key

__all__ = ["email_key"]
