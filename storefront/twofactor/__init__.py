"""Staff accounts that are hard to take over: a second factor (django-otp) for the admin and the review queue.

- policy.py: who must have one (staff who can refund, export keys or edit payment channels), and the middleware
  that sends a signed-in user to set one up or to enter it before any admin or review page;
- views.py: the set-up page (a TOTP app by QR code, then recovery codes shown once) and the verify page;
- audit.py: every sign-in step written as a StaffSignIn row (password accepted or refused, second factor
  accepted or refused, recovery code used, set up, signed out).
"""
