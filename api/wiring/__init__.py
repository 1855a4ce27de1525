"""The composition root's parts: one module per capability, each with its
``wire_<capability>()`` and the typed bundle it returns (api.bootstrap joins them)."""
