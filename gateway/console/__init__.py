"""The web console: operators review and correct decisions, manage quarantine and models; admins edit the config.

Server-rendered (Starlette + Jinja2, autoescaped), readable without JavaScript, served by ``gateway run`` in a
thread or alone by ``gateway console``. It is imported only when ``[console] enabled = true``.
"""
