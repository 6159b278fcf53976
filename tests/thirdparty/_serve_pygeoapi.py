"""Serve pygeoapi on a listening socket inherited from the test: ``python _serve_pygeoapi.py FD``.

``PYGEOAPI_CONFIG`` names the configuration the test wrote. First the OpenAPI document pygeoapi needs is
generated at ``PYGEOAPI_OPENAPI`` (the documented ``pygeoapi openapi generate CONFIG --output-file FILE``,
run in this process), then werkzeug (a dependency of pygeoapi, through Flask) serves pygeoapi's Flask app,
threaded, on the socket. ``pygeoapi serve`` is not used: it runs Flask's debug server with the reloader (a
second process) on a port named in the config, where the test hands over a socket it already bound to a
free loopback port, so there is no race for the port.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    fd = int(sys.argv[1])

    from pygeoapi import cli

    cli.main(
        ["openapi", "generate", os.environ["PYGEOAPI_CONFIG"], "--output-file", os.environ["PYGEOAPI_OPENAPI"]],
        standalone_mode=False,
    )

    from pygeoapi.flask_app import APP  # reads PYGEOAPI_CONFIG and PYGEOAPI_OPENAPI on import
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, APP, threaded=True, fd=fd)
    print(f"pygeoapi serving on {server.server_address}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
