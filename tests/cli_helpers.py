"""Drives the real command line with bad input and checks how it fails:
exit code 2, no traceback, and a message naming the culprit and the
problem."""
import re
import subprocess
import sys
from typing import List, Sequence

from pyg_mmrec.cli import main


def run_cli(argv: Sequence[str], capsys) -> tuple:
    r"""Runs :obj:`python -m pyg_mmrec *argv` in this process and returns
    :obj:`(exit code, stdout, stderr)`; argparse's :obj:`SystemExit` is
    turned into its code. Any other exception escapes (a traceback)."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 2
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def expect_cli_error(argv: Sequence[str], capsys, *fragments: str) -> str:
    r"""Runs :obj:`argv` and asserts that it exits with code 2, prints no
    traceback and that its error output holds every regular expression in
    :obj:`fragments` (case-insensitive): the file or argument, and the
    problem. Returns the error output."""
    code, out, err = run_cli(argv, capsys)
    text = out + err
    assert 'Traceback' not in text, text
    assert code == 2, f"exit code {code}, expected 2:\n{text}"
    for fragment in fragments:
        assert re.search(fragment, err, re.IGNORECASE | re.DOTALL), (
            f"{fragment!r} not in the error output:\n{err}")
    return err


def run_cli_process(argv: List[str], cwd=None, timeout=300):
    r"""Runs :obj:`python -m pyg_mmrec *argv` as a separate process (for
    checks that need a real exit, e.g. of a crafted file's payload)."""
    return subprocess.run([sys.executable, '-m', 'pyg_mmrec', *argv],
                          capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
