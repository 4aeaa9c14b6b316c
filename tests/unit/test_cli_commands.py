"""The ``threshold`` command's dispatch: every parser runs a Command of its own, every Command runs.

Builds the parser only: no Django, no database. Walking the parser tree needs
argparse's private ``_actions`` and ``_SubParsersAction``; nothing else here does.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from threshold.cli.commands import Command, Subcommands
from threshold.cli.commands.management import DJANGO_COMMANDS
from threshold.cli.main import COMMAND, GROUPS, build

Words = tuple[str, ...]


def runnable(
    parser: argparse.ArgumentParser, words: Words = ()
) -> Iterator[tuple[Words, argparse.ArgumentParser]]:
    """Every parser at which the arguments may end, with the words that reach it."""
    subcommands = [
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    ]
    if not subcommands or not subcommands[0].required:
        yield words, parser
    for action in subcommands:
        for name, child in action.choices.items():
            yield from runnable(child, (*words, name))


def without_a_command(parser: argparse.ArgumentParser) -> list[str]:
    """The words of each runnable parser that has no Command of its own."""
    missing = []
    for words, child in runnable(parser):
        command = child.get_default(COMMAND)  # the parser's own default, never its parent's
        if not isinstance(command, Command) or command.parser is not child:
            missing.append(" ".join(words))
    return missing


def minimal_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """A value ("1": a number or a string; else its first choice) for each argument the parser
    requires."""
    arguments: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if not action.option_strings:
            arguments.append(str(next(iter(action.choices))) if action.choices else "1")
        elif action.required:
            arguments += [action.option_strings[0], "1"]
    return arguments


CLI = build()
RUNNABLE = {" ".join(words): parser for words, parser in runnable(CLI.parser)}


def test_every_subcommand_has_a_command_of_its_own():
    assert without_a_command(CLI.parser) == []
    # What the README and `threshold --help` name, groups run alone included.
    assert set(RUNNABLE) == {
        "invite",
        "recover",
        "users",
        "users list",
        "users lock",
        "users unlock",
        "groups",
        "groups list",
        "groups add",
        "groups remove",
        "groups add-member",
        "groups remove-member",
        "users role",
        "users deactivate",
        "users reactivate",
        "users import",
        "policy",
        "policy show",
        "policy set",
        "policy check",
        "audit",
        "report",
        "report readiness",
        "bootstrap",
        "serve",
        "cleanup",
        "inspect registration",
        "inspect authentication",
        "apps",
        "apps list",
        "apps add",
        "apps remove",
        "apps rotate-secret",
        "apps assign",
        "apps change",
        "keys",
        "keys list",
        "keys rotate",
    }


def test_every_command_is_reachable_from_threshold():
    parsers = list(RUNNABLE.values())
    for command in CLI.commands:
        assert any(command.parser is parser for parser in parsers), command
        # One Command per parser: a second would replace the first as its default.
        assert command.parser.get_default(COMMAND) is command
    assert len(CLI.commands) == len(parsers)


@pytest.mark.parametrize("words", sorted(RUNNABLE))
def test_the_arguments_select_the_command_of_their_parser(words):
    parser = RUNNABLE[words]
    args = CLI.parser.parse_args([*words.split(), *minimal_arguments(parser)])
    assert getattr(args, COMMAND) is parser.get_default(COMMAND)


def test_a_parser_added_without_a_command_is_found():
    def forgetful(commands: Subcommands) -> list[Command]:
        # (Not "report": `threshold report` exists.)
        digest = commands.add_parser("digest")
        kinds = digest.add_subparsers(dest="kind")
        kinds.add_parser("weekly")  # no Command for `digest weekly`
        return [Command(digest, lambda args: 0)]

    def stray(commands: Subcommands) -> list[Command]:
        commands.add_parser("export")  # no Command at all
        return [Command(argparse.ArgumentParser(), lambda args: 0)]  # a parser nobody reaches

    cli = build((*GROUPS, forgetful, stray))
    assert without_a_command(cli.parser) == ["digest weekly", "export"]
    reachable = [parser for _, parser in runnable(cli.parser)]
    assert [c for c in cli.commands if not any(c.parser is p for p in reachable)] == [
        cli.commands[-1]
    ]


def test_djangos_commands_named_in_the_help_are_no_threshold_subcommand():
    assert CLI.names == {words.split()[0] for words in RUNNABLE}
    assert not CLI.names & set(DJANGO_COMMANDS)


def test_only_inspect_runs_without_django():
    plain = {
        words for words, parser in RUNNABLE.items() if not parser.get_default(COMMAND).needs_django
    }
    assert plain == {"inspect registration", "inspect authentication"}
