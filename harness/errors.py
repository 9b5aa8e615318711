"""The error types library code raises; only the CLI turns them into exit codes."""


class HarnessError(Exception):
    """Base of every error the harness reports to its user: the message is for them."""

    exit_code = 1


class SpecError(HarnessError):
    """Bad input: a workload file, a command-line value or an address the user gave (exit 2)."""

    exit_code = 2


class RunError(HarnessError):
    """The run itself failed: a server that would not start, lost items, a checksum mismatch (exit 1)."""

    exit_code = 1
