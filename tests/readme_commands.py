#!/usr/bin/env python3
"""The README's two set-up commands, read from README.md itself, so the
README and what the test command checks cannot drift apart.

"On a fresh machine" in README.md holds exactly two fenced commands: the
first runs the demo, the second runs the tests. This script

- runs the demo command verbatim from the repository root and checks that it
  succeeds, shows its isolation table and takes seconds, not minutes;
- checks that the test command is `tests/run`, the command that runs this
  script (it cannot run itself).

    tests/readme_commands.py            both checks
    tests/readme_commands.py --no-demo  only read and check the commands

Standard library only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
SECTION = "On a fresh machine"
TEST_COMMAND = "tests/run"
#: What the demo prints when every cell of its isolation table came out as expected.
DEMO_DONE = "Every cell matched"
#: The demo after the build: seconds. Far above that means it grew a slow step.
DEMO_LIMIT_SECONDS = 90.0


def fail(message: str) -> None:
    print(f"readme_commands: {message}", file=sys.stderr)
    sys.exit(1)


def setup_commands(readme: str) -> List[str]:
    """The fenced shell commands of the README's set-up section, in order."""
    match = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    if not match:
        fail(f'README.md has no "## {SECTION}" section')
    blocks = re.findall(r"^```(?:sh|bash|shell)?\n(.*?)^```", match.group(1), re.S | re.M)
    return [b.strip() for b in blocks]


def main(argv: List[str]) -> int:
    commands = setup_commands((ROOT / "README.md").read_text())
    if len(commands) != 2 or any("\n" in c for c in commands):
        fail(f'"{SECTION}" must hold two one-line fenced commands (the demo, then the tests); found {commands!r}')
    demo, tests = commands
    if " demo" not in demo:
        fail(f"the first command does not run the demo: {demo!r}")
    if tests != TEST_COMMAND:
        fail(f"the README's test command is {tests!r}, but {TEST_COMMAND} is what runs the tests (and this check)")
    runner = (ROOT / TEST_COMMAND).read_text()
    if Path(__file__).name not in runner:
        fail(f"{TEST_COMMAND} does not run {Path(__file__).name}")
    print(f"README test command: {tests} (the command that runs this check)")
    if "--no-demo" in argv:
        return 0

    print(f"README demo command: {demo}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", demo], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        fail(f"the README's demo command failed (exit {proc.returncode})")
    if DEMO_DONE not in proc.stdout:
        sys.stderr.write(proc.stdout[-4000:])
        fail("the demo did not finish its isolation table")
    if elapsed > DEMO_LIMIT_SECONDS:
        fail(f"the demo took {elapsed:.0f} s after the build; it should take seconds")
    print(f"README demo command: ok in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
