"""The one exception tree of DupliGone.

    DupliGoneError
    ├── PhotoError            a photo that cannot be analysed; carries ``path`` and ``reason``
    │   ├── EmptyFile
    │   ├── NotAnImage
    │   ├── CorruptImage      truncated or damaged data
    │   ├── TooManyPixels     decompression-bomb guard
    │   └── UnreadableFile    permission or I/O failure
    ├── UsageError            a bad path or option given by the person; shown as one line
    ├── ConfigError           a config file that cannot be used; ``problems`` lists each one
    │   └── MissingExtra      an optional backend is configured but its extra is not installed
    ├── MirrorError           a mirror (Azure Blob, MongoDB) cannot be reached or refused a
    │                         change; the outbox keeps the change and retries with backoff
    ├── StateLocked           another daemon already runs on this state folder
    └── IndexDamaged          the index file is damaged; the message says where the last
                              backup is and which command restores or rebuilds it

Deep code raises these; the CLI and daemon turn them into one line of text and an exit code.
"""

from __future__ import annotations


class DupliGoneError(Exception):
    """Base of every error DupliGone raises on purpose."""


class PhotoError(DupliGoneError):
    """A file that cannot be analysed. ``reason`` is short and readable by a person."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class EmptyFile(PhotoError):
    pass


class NotAnImage(PhotoError):
    pass


class CorruptImage(PhotoError):
    pass


class TooManyPixels(PhotoError):
    pass


class UnreadableFile(PhotoError):
    pass


class UsageError(DupliGoneError):
    """A bad argument or path given by the person running DupliGone."""


class ConfigError(DupliGoneError):
    """A config file that cannot be used. ``problems`` holds every problem, each with its dotted key."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        head = f"config {source}" if source else "config"
        super().__init__(f"{head}: " + "; ".join(problems) if len(problems) == 1 else
                         f"{head}: {len(problems)} problems:\n  " + "\n  ".join(problems))
        self.problems = problems
        self.source = source


class MissingExtra(ConfigError):
    """A configured backend whose extra is not installed; the message names the extra to install."""

    def __init__(self, key: str, what: str, extra: str) -> None:
        super().__init__([f"At '{key}': {what} needs the extra: pip install 'dupligone[{extra}]'"])
        self.extra = extra


class MirrorError(DupliGoneError):
    """A mirror that cannot be reached or refused a change. The message never holds a secret."""


class StateLocked(DupliGoneError):
    """Another ``dupligoned`` holds the state folder's lock; ``pid`` is the running one's."""

    def __init__(self, state_dir: str, pid: int | None) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"another dupligoned ({who}) is already running on {state_dir}; stop it first")
        self.pid = pid


class IndexDamaged(DupliGoneError):
    """The index cannot be read (``database disk image is malformed``, not a database).

    One line for a person: what is wrong, where the last backup is, the command to run.
    """

    def __init__(self, path: str, what: str, backup: str | None, config: str = "") -> None:
        cfg = f" --config {config}" if config else ""
        hint = (f"last backup: {backup}; restore it with `dupligone index restore{cfg}`, or re-analyse the libraries "
                f"with `dupligone index rebuild{cfg}`") if backup else (
            f"no backup yet; re-analyse the libraries with `dupligone index rebuild{cfg}`")
        super().__init__(f"the index {path} is damaged ({what}); {hint}")
        self.path = path
        self.what = what
        self.backup = backup
