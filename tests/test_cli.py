"""The `wattshare` command as a user runs it (subprocess of the installed console script)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WATTSHARE = shutil.which("wattshare", path=str(Path(sys.executable).parent)) or "wattshare"


def run(*args):
    return subprocess.run([WATTSHARE, *args], capture_output=True, text=True, timeout=60)


def test_help_lists_the_demo():
    result = run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "Example" in result.stdout


def test_demo_says_plainly_it_is_not_built_yet():
    result = run("demo")
    assert result.returncode == 2
    assert "not built yet" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("frobnicate",), ("demo", "--no-such-flag")])
def test_bad_arguments_give_usage_error(args):
    result = run(*args)
    assert result.returncode == 2
    assert "Error" in result.stderr
