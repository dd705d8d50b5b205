"""Steps for the client scripts: each step runs even when an earlier one failed, prints
`ok STEP` or `FAIL STEP: why`, and `exit()` ends the script non-zero if any failed."""

import sys


class Steps:
    def __init__(self):
        self.failed = False

    def run(self, name, f):
        try:
            f()
            print("ok", name, flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next step runs
            self.failed = True
            print("FAIL", name + ":", repr(e), flush=True)

    def exit(self):
        sys.exit(1 if self.failed else 0)
