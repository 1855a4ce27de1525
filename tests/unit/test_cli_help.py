"""Every `conductor` option says what it does, its choices and its default."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from api.cli.main import parser

if TYPE_CHECKING:
    from collections.abc import Iterator

FLAGS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._VersionAction,
)


def actions(
    node: argparse.ArgumentParser, path: str = "conductor"
) -> Iterator[tuple[str, argparse.Action]]:
    """Every action of every (sub)command, with the command's path."""
    for action in node._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from actions(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def problems(path: str, action: argparse.Action) -> list[str]:
    name = f"{path} {'/'.join(action.option_strings) or action.dest}"
    text = action.help if isinstance(action.help, str) else ""
    if not text or text == argparse.SUPPRESS:
        return [f"{name}: no help"]
    rendered = text % {**vars(action), "prog": path}
    found = []
    if action.choices is not None:
        found += [
            f"{name}: help does not list choice {c!r}"
            for c in action.choices
            if str(c) not in rendered
        ]
    shown = action.default not in (None, argparse.SUPPRESS, [])
    if shown and not isinstance(action, FLAGS) and "default" not in rendered:
        found.append(f"{name}: help does not give the default {action.default!r}")
    return found


def test_every_option_has_help_with_its_choices_and_default() -> None:
    """Walks the whole parser, every subcommand included."""
    found = [p for path, action in actions(parser()) for p in problems(path, action)]
    assert found == []


def test_the_walk_sees_the_subcommands() -> None:
    """A walk that found nothing would pass the test above vacuously."""
    paths = {path for path, _ in actions(parser())}
    assert {"conductor serve", "conductor token issue", "conductor er eval"} <= paths
    assert "conductor dr drill" in paths
