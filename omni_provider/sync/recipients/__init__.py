"""The email-only recipients target of the sync engine (``/api/v1/users/email-only``)."""
