"""``tearline gateway``: a TAXII 2.1 server run by a partner node.

Pure core: :mod:`gateway.config` (the YAML file, users, secrets), :mod:`gateway.taxii` (filters,
paging, resource shapes). I/O edge: :mod:`gateway.store` (SQLite), :mod:`gateway.app` (FastAPI),
:mod:`gateway.sync` (the node's subscription), :mod:`gateway.cli` (the command).
"""
