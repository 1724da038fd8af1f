"""Tests of `tearline gateway`, the TAXII 2.1 server a partner node runs."""
