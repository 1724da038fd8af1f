"""The partner side of Tearline: the SDK (:mod:`tearline.clients.partner`, re-exported by
:mod:`tearline`), the pure protocol and governance core, the STIX tools and the CLI. Nothing is
imported here, so importing the core loads only the core."""
