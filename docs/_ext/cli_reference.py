"""Sphinx extension: the command-line reference, generated from the real argparse parser.

The directive ``diffcontract-cli`` imports ``diffcontract.cli.build_parser()`` at build time and
renders the top-level ``--help`` and then one section per subcommand (in the order the parser lists
them) holding that subcommand's ``format_help()`` as a literal block. The page therefore always
shows the flags the installed code accepts: nothing is copied by hand.

Usage (MyST)::

    ```{diffcontract-cli}
    ```

Option ``:width:`` sets the help text's line width (default 88 columns); the width is fixed so
that the page does not depend on the terminal that runs the build.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

DEFAULT_WIDTH = 88


@contextlib.contextmanager
def _columns(width: int):
    """argparse wraps help at ``shutil.get_terminal_size()``, which reads ``$COLUMNS`` first."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """(name, subparser) pairs in the order ``--help`` lists them (aliases skipped)."""
    out: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out.append((name, sub))
    return out


def _help_text(parser: argparse.ArgumentParser, width: int) -> str:
    with _columns(width):
        return parser.format_help().rstrip() + "\n"


class DiffcontractCLI(SphinxDirective):
    """Render ``diffcontract --help`` and every subcommand's ``--help``."""

    has_content = False
    option_spec = {"width": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        from diffcontract import cli

        # Rebuild this page when any CLI module changes (incremental builds).
        for path in sorted(Path(cli.__file__).parent.glob("*.py")):
            self.env.note_dependency(str(path))

        width = self.options.get("width", DEFAULT_WIDTH)
        parser = cli.build_parser()
        result: list[nodes.Node] = [self._literal(_help_text(parser, width))]
        for name, sub in _subcommands(parser):
            section = nodes.section(ids=[nodes.make_id(f"diffcontract-{name}")], names=[nodes.fully_normalize_name(f"diffcontract {name}")])
            section += nodes.title(text=f"diffcontract {name}")
            description = sub.description or _summary(parser, name)
            if description:
                section += nodes.paragraph(text=description)
            section += self._literal(_help_text(sub, width))
            self.state.document.note_implicit_target(section, section)
            result.append(section)
        return result

    def _literal(self, text: str) -> nodes.literal_block:
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        self.set_source_info(block)
        return block


def _summary(parser: argparse.ArgumentParser, name: str) -> str:
    """The one-line help a subcommand has in the top-level listing."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name or getattr(choice, "metavar", None) == name:
                    return (choice.help or "").strip()
    return ""


def setup(app):
    app.add_directive("diffcontract-cli", DiffcontractCLI)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # print what the directive renders: python docs/_ext/cli_reference.py
    from diffcontract import cli

    top = cli.build_parser()
    sys.stdout.write(_help_text(top, DEFAULT_WIDTH))
    for cmd, sub in _subcommands(top):
        sys.stdout.write(f"\n== diffcontract {cmd}\n{_help_text(sub, DEFAULT_WIDTH)}")
