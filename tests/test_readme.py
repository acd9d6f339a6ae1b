"""The README runs: every code block is executed, on its own, and prints what the README says.

Conventions in README.md (read by this file, nowhere else):

* a ``python`` block runs in a fresh namespace (so it must be self-contained); the global JAX
  configuration is restored after it;
* a ``bash`` block is read line by line: ``diffcontract ...`` lines (``\\`` continuations and a
  final ``> FILE`` allowed) run through ``diffcontract.cli.main`` in the README's working folder
  and must exit 0 (or the code of a ``# exit N`` comment at the line's end); any other command is
  an error unless the block is preceded by ``<!-- readme-test: slow -->`` (then it runs in
  ``bash`` under ``pytest -m slow``) or ``<!-- readme-test: ci -->`` (the two set-up commands,
  which ``.ci/run`` and the pre-stop hook run themselves);
* a ``toml`` block preceded by ``<!-- readme-test: file NAME -->`` is written to NAME in the working
  folder, for the blocks after it;
* a ``text`` block right after a ``python`` or ``bash`` block is that block's exact standard output;
  any other ``text`` block is verbatim prose (the package layout), not code.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import shlex
import subprocess

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\s*\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
SETUP_COMMANDS = ['pip install -e ".[dev]" && diffcontract demo', 'pip install -e ".[dev]" && pytest']


def readme_blocks():
    """(line, lang, mark, body, expected stdout or None) for every code block but output blocks."""
    text = README.read_text()
    matches = list(FENCE.finditer(text))
    blocks = []
    for k, match in enumerate(matches):
        if match["lang"] == "text" and k and _adjacent(text, matches[k - 1], match):
            continue
        nxt = matches[k + 1] if k + 1 < len(matches) else None
        expected = nxt["body"] if nxt is not None and nxt["lang"] == "text" and _adjacent(text, match, nxt) else None
        line = text.count("\n", 0, match.start("lang")) + 1
        blocks.append((line, match["lang"], match["mark"] or "", match["body"], expected))
    return blocks


def _adjacent(text, first, second) -> bool:
    return text[first.end():second.start()].strip() == ""


def _param(block):
    line, lang, mark, _, _ = block
    marks = [pytest.mark.slow] if mark == "slow" else []
    return pytest.param(block, id=f"README.md:{line}:{lang}", marks=marks)


BLOCKS = readme_blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("readme")


def _commands(body: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _run_cli_line(command: str, workdir) -> str:
    from diffcontract import cli

    command, _, comment = command.partition("#")
    expected_code = int(re.search(r"exit (\d)", comment)[1]) if "exit" in comment else 0
    words = shlex.split(command)
    target = None
    if ">" in words:
        words, target = words[: words.index(">")], words[words.index(">") + 1]
    out = io.StringIO()
    previous = jax.config.jax_enable_x64
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        with contextlib.redirect_stdout(out):
            try:
                code = cli.main(words[1:])
            except SystemExit as exit_:  # --version, --help
                code = exit_.code
    finally:
        os.chdir(cwd)
        jax.config.update("jax_enable_x64", previous)
    assert code == expected_code, f"{command!r} exited {code}, expected {expected_code}"
    if target is None:
        return out.getvalue()
    (workdir / target).write_text(out.getvalue())
    return ""


def _run_python(body: str, line: int) -> str:
    out = io.StringIO()
    previous = jax.config.jax_enable_x64
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
    finally:
        jax.config.update("jax_enable_x64", previous)
    return out.getvalue()


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block(block, workdir):
    line, lang, mark, body, expected = block
    if mark == "ci":
        assert _commands(body) == SETUP_COMMANDS  # .ci/run and the pre-stop hook run these themselves
        assert "pip install -e \".[dev]\" && pytest" in (ROOT / ".ci" / "run").read_text()
        return
    if lang == "text":
        return  # prose laid out verbatim (the package layout), not code
    if mark.startswith("file "):
        (workdir / mark.split()[1]).write_text(body)
        return
    if lang == "python":
        output = _run_python(body, line)
    elif lang == "bash" and mark == "slow":
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        output = proc.stdout
    elif lang == "bash":
        output = ""
        for command in _commands(body):
            assert command.startswith("diffcontract "), f"README.md:{line}: {command!r} needs a readme-test mark"
            output += _run_cli_line(command, workdir)
    else:
        pytest.fail(f"README.md:{line}: a {lang!r} block without a readme-test mark")
    if expected is not None:
        assert output.rstrip() == expected.rstrip(), f"README.md:{line} printed:\n{output}"


def test_every_block_is_seen():
    langs = {lang for _, lang, _, _, _ in BLOCKS}
    assert {"python", "bash"} <= langs and len(BLOCKS) >= 8
