"""Calling a command-line `main` the way its `python -m` entry point does, from a test."""
from harness.errors import run_main


def run_cli(main, argv, capsys):
    """(exit status, stderr) of `main(argv)` under run_main; argparse's flag errors exit with
    SystemExit before main runs, so their status is read from the exception."""
    try:
        status = run_main(main, argv)
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err
