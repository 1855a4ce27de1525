"""`conductor switch`: the seed's backout switches, from the operator's shell."""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, Any

from domain.ops.switches import BACKOUTS

if TYPE_CHECKING:
    import argparse

    from api.settings import Settings


def cmd_switch(settings: Settings, args: argparse.Namespace) -> int:
    from api.runtime.dr import api_ledger  # noqa: PLC0415 - the pair, or the URL
    from application.ops.switches import Switches  # noqa: PLC0415
    from domain.errors import ValidationError  # noqa: PLC0415

    ledger = api_ledger(settings, pool_size=2)
    try:
        switches = Switches(ledger)
        if args.action != "list":
            try:
                position = switches.set(
                    args.name,
                    on=args.action == "on",
                    by=args.by or f"cli:{getpass.getuser()}",
                    reason=args.reason,
                )
            except ValidationError as error:
                print(f"conductor switch: {error}", file=sys.stderr)
                return 2
            change = "unchanged" if position is None else f"position {position}"
            print(
                f"{args.name}: {'engaged' if args.action == 'on' else 'released'} "
                f"({change}); every process honours it within "
                f"{settings.switch_refresh_s:g} s"
            )
            return 0
        for state in switches.states():
            mark = "ENGAGED" if state.engaged else "off"
            who = f"  by {state.by}: {state.reason}" if state.engaged else ""
            print(f"{state.name:<26} {mark:<8} {state.effect}{who}")
        return 0
    finally:
        ledger.close()


def add_commands(sub: Any) -> None:
    """Register `conductor switch list|on|off` on the parser."""
    switch = sub.add_parser(
        "switch", help="the backout switches (audited, honoured by every process)"
    ).add_subparsers(dest="action", required=True)
    switch.add_parser("list", help="every switch and its state").set_defaults(
        func=cmd_switch
    )
    for action, what in (("on", "engage"), ("off", "release")):
        parser = switch.add_parser(action, help=f"{what} a switch (recorded with why)")
        parser.add_argument(
            "name",
            choices=sorted(BACKOUTS),
            help=f"the switch: one of {', '.join(sorted(BACKOUTS))}",
        )
        parser.add_argument("--reason", required=True, help="why (kept in the log)")
        parser.add_argument("--by", help="who (default: cli:<your login>)")
        parser.set_defaults(func=cmd_switch)
