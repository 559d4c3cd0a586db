"""The agent's command line is read the way Porter's cobra/pflag reads it."""

from __future__ import annotations

import pytest

from porter_bundle.agent.flags import Command, Flag, UsageError, parse

NS = Flag("namespace", "n", default="")
FORCE = Flag("force", boolean=True, default=False)


def tree() -> Command:
    leaf = Command("delete", ("rm",), (NS, FORCE), run=lambda p: 0)
    return Command("porter", subcommands=[Command("credentials", ("creds",), subcommands=[leaf])])


@pytest.mark.parametrize(
    "argv",
    [
        ["credentials", "delete", "-n", "dev", "mycreds"],
        ["credentials", "delete", "mycreds", "-n", "dev"],
        ["creds", "rm", "--namespace=dev", "mycreds"],
        ["credentials", "delete", "-ndev", "mycreds"],
        ["credentials", "delete", "-n=dev", "mycreds"],
        ["-n", "dev", "credentials", "delete", "mycreds"],
    ],
)
def test_flags_anywhere_aliases_and_value_forms(argv):
    parsed = parse(tree(), argv)
    assert parsed.path[-1] in ("delete", "rm")
    assert parsed.args == ["mycreds"] and parsed.namespace == "dev"
    assert parsed.given == {"namespace"} and parsed.force is False


def test_an_empty_value_and_a_value_that_looks_like_a_flag():
    parsed = parse(tree(), ["credentials", "delete", "-n", "", "x"])
    assert parsed.namespace == "" and "namespace" in parsed.given and parsed.args == ["x"]
    assert parse(tree(), ["credentials", "delete", "-n", "--force", "x"]).namespace == "--force"


def test_booleans_and_the_end_of_flags():
    assert parse(tree(), ["credentials", "delete", "--force", "x"]).force is True
    assert parse(tree(), ["credentials", "delete", "--force=false", "x"]).force is False
    parsed = parse(tree(), ["credentials", "delete", "--", "-n", "x"])
    assert parsed.args == ["-n", "x"] and parsed.namespace == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["credentials", "delete", "--bogus", "x"], "unknown flag: --bogus"),
        (["credentials", "delete", "-x"], "unknown shorthand flag: 'x' in -x"),
        (["credentials", "delete", "-n"], "flag needs an argument: -n"),
        (["credentials", "frobnicate"], 'unknown command "frobnicate" for "porter credentials"'),
        (["bogus"], 'unknown command "bogus" for "porter"'),
        (["credentials"], '"porter credentials" requires a subcommand'),
        (
            ["credentials", "delete", "--force=maybe"],
            'invalid argument "maybe" for "--force" flag: '
            'strconv.ParseBool: parsing "maybe": invalid syntax',
        ),
    ],
)
def test_refusals_in_porters_words(argv, message):
    with pytest.raises(UsageError) as caught:
        parse(tree(), argv)
    assert str(caught.value) == message
