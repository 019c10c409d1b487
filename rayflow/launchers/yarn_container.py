"""What the rayflow YARN services run inside their containers (see :mod:`rayflow.launchers.yarn`).

    python -m rayflow.launchers.yarn_container publish --ray 10.0.0.5:6379 --ui http://10.0.0.5:8744
    python -m rayflow.launchers.yarn_container head-address          # waits for the head

The head publishes Ray's address and the UI's in skein's key-value store (and the UI as a page of
skein's web UI, which is the application's tracking URL); workers read the address from there.
"""

from __future__ import annotations

import argparse
import sys

HEAD_KEY = "ray-head"
UI_KEY = "rayflow-ui"
TOKEN_KEY = "ray-token"  # the key-value store is the application owner's only, as its files are


def main(argv: list[str] | None = None) -> int:
    import skein

    parser = argparse.ArgumentParser(prog="python -m rayflow.launchers.yarn_container")
    sub = parser.add_subparsers(dest="command", required=True)
    publish = sub.add_parser("publish", help="publish the head's Ray and UI addresses")
    publish.add_argument("--ray", required=True)
    publish.add_argument("--ui", required=True)
    sub.add_parser("head-address", help="print the head's Ray address (waits for it)")
    args = parser.parse_args(argv)
    app = skein.ApplicationClient.from_current()
    if args.command == "publish":
        with open("ray-token", "rb") as f:
            app.kv[TOKEN_KEY] = f.read().strip()
        app.kv[UI_KEY] = args.ui.encode()
        app.kv[HEAD_KEY] = args.ray.encode()  # last: workers wait for it
        try:
            app.ui.add_page("rayflow", args.ui, link_name="rayflow UI")
        except Exception as exc:  # the web UI is a convenience; the key-value store is enough
            print(f"rayflow: could not add the UI page to skein's web UI: {exc}", file=sys.stderr)
    else:
        value = app.kv.wait(HEAD_KEY)
        print(value.decode() if isinstance(value, bytes) else value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
