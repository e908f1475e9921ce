"""CLI: ``run-all``: every step of the tutorial in order, headless."""

from engine.cli._stub import not_built


def register(sub, parent):
    p = sub.add_parser(
        "run-all", parents=[parent], help="every step in order: data, config, train, merge, chat"
    )
    p.add_argument("--name", required=True, help="your name, as the assistant should say it")
    p.add_argument("--model", default="demo", metavar="PATH|demo")
    p.set_defaults(func=not_built)
