"""The review page: a Litestar + Jinja app served by the daemon (a thin shell over the services).

Templates and static files live in the repository's top-level ``web/`` folder; ``assets`` here
points at it, so an installed wheel carries them as package data.
"""
