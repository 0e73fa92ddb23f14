"""`python -m gateway.scripted_model [--port N]`: serve the scripted model until Ctrl-C."""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app
from .server import bind, url_of


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.scripted_model", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    sock = bind(args.host, args.port)
    print(url_of(sock), flush=True)
    uvicorn.Server(uvicorn.Config(create_app(), log_level="info", lifespan="off")).run(sockets=[sock])


if __name__ == "__main__":
    main()
