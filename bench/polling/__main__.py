"""``python -m bench.polling``: see ``bench/polling/__init__.py``."""

from bench.polling.run import main

main()
