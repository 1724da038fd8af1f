"""The releasability engine (§4), pure: the broker runs it at ingest and delivery, and a node
that pinned its governance root runs it on the documents it verified, so neither has to
believe the other's answer."""
