"""mdnext's built-in adapters to outside tools, installed as ``mdnext.plugins``.

Each module is registered through the ``mdnext.readers`` / ``mdnext.writers`` entry points in
``pyproject.toml``, exactly as a third-party plugin would be.
"""
