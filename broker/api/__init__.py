"""The HTTP API (§6): one router per thing a partner or operator does."""
