"""The daemon's configuration: TOML in, frozen dataclasses out.

One registry drives everything: each setting is a dataclass field whose metadata holds its help
text, its check and whether it is a secret. The loader walks the dataclasses, so defaults,
validation, ``check-config`` and the sample file's sync test all read the same definitions.

Every problem is collected before anything is refused, each with its dotted key and a hint::

    At 'web.port': must be 1-65535 (got 70000)

Relative paths are resolved against the directory of the config file.

Raises ``ConfigError`` (with ``problems``) from ``load_config`` and ``find_config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dupligoned.errors import ConfigError

Check = Callable[[Any], str | None]  # returns a problem ("must be ...") or None


def setting(default: Any, help: str, check: Check | None = None, *, secret: bool = False) -> Any:
    """A config field: its default, one line of help, an optional check, and whether to mask it."""
    meta = {"help": help, "check": check, "secret": secret}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be {lo}-{hi} (got {v})"
    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0 (got {v})"


def _not_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be ≥ 0 (got {v})"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(repr(c) for c in choices)} (got {v!r})"
    return check


def _hhmm(v: Any) -> str | None:
    try:
        h, m = (int(x) for x in str(v).split(":"))
    except ValueError:
        return f"must be a time of day as \"HH:MM\" (got {v!r})"
    return None if 0 <= h < 24 and 0 <= m < 60 else f"must be a time of day as \"HH:MM\" (got {v!r})"


def _redis_url(v: Any) -> str | None:
    ok = isinstance(v, str) and v.startswith(("redis://", "rediss://", "unix://"))
    return None if ok else f"must be a redis://host:port/db URL (got {mask_url(str(v))!r})"


@dataclass(frozen=True)
class LibraryConfig:
    path: str = setting("", "a photo folder to watch (absolute, or relative to this file)")
    mode: str = setting("auto", "how to watch it: \"auto\" (polling on network mounts), \"native\" (inotify) or \"poll\"",
                        _one_of("auto", "native", "poll"))
    protected: bool = setting(False, "never recommend deleting photos from this folder")


@dataclass(frozen=True)
class WatchConfig:
    stable_s: float = setting(
        5.0, "a file is taken once its size and mtime have not changed for this long (at once when renamed "
        "from a partial name such as x.jpg.part)", _not_negative)
    poll_interval_s: float = setting(30.0, "how often polled folders (network mounts) are looked at", _positive)
    startup_scan: bool = setting(True, "look for new, changed and vanished files when the daemon starts")
    rescan_every_min: float = setting(360.0, "periodic full rescan, a safety net for missed events (0: never)", _not_negative)


@dataclass(frozen=True)
class QueueConfig:
    redis_url: str | None = setting(None, "use Redis (RedisHuey) for the queue, shared by workers on other machines",
                                    _redis_url, secret=True)
    workers: int = setting(0, "analysis processes on this machine (0: one per core)", _between(0, 256))
    lock_timeout_s: float = setting(60.0, "SQLite queue busy timeout; huey's 5 s default loses work under load", _positive)
    retries: int = setting(3, "retries of a task that failed for a passing reason (a NAS hiccup)", _between(0, 100))
    retry_delay_s: float = setting(5.0, "delay before the first retry; doubled at each retry", _not_negative)
    stuck_after_s: float = setting(1800.0, "re-queue a photo whose analysis has not come back after this long", _positive)


@dataclass(frozen=True)
class AnalysisConfig:
    max_pixels: int = setting(
        64_000_000, "decode budget: most pixels decoded at full size (JPEG counts after DCT scaling; "
        "PNG, TIFF, WebP, HEIC, RAW above it are refused: decompression bombs; ~4 bytes a pixel per worker)", _positive)
    work_px: int = setting(512, "long edge of the working image quality is measured on", _between(64, 4096))
    thumb_px: int = setting(320, "long edge of the thumbnails kept for the review page", _between(32, 2048))


@dataclass(frozen=True)
class SessionsConfig:
    quiet_s: float = setting(60.0, "a burst of new files becomes a session after this long without a new file", _not_negative)
    recluster_every_s: float = setting(60.0, "how often sessions that changed are clustered again", _positive)


@dataclass(frozen=True)
class ClusterConfig:
    eps_scale: float = setting(0.7, "scale applied to the elbow of the k-distance graph", _between(0.01, 2))
    eps_min: float = setting(3.0, "never group stricter than this distance (0-64)", _between(0, 64))
    eps_max: float = setting(10.0, "never group looser than this distance (0-64)", _between(0, 64))
    max_diameter_factor: float = setting(1.5, "all members of a group within this × eps of each other", _between(1, 10))
    fallback_percentile: float = setting(10.0, "eps percentile when the k-distance graph has no elbow", _between(0.01, 99.99))


@dataclass(frozen=True)
class KeeperConfig:
    resolution_ratio: float = setting(0.8, "a copy with less than this share of the largest pixel count is a lower-resolution copy",
                                      _between(0.01, 1))
    weight_sharpness: float = setting(0.45, "weight of sharpness in the quality score", _not_negative)
    weight_brightness: float = setting(0.2, "weight of brightness in the quality score", _not_negative)
    weight_contrast: float = setting(0.2, "weight of contrast in the quality score", _not_negative)
    weight_faces: float = setting(0.15, "weight of faces in the quality score", _not_negative)
    raw_jpeg_pairs: str = setting(
        "keep-both", "a camera's RAW+JPEG pair (same folder, stem and capture time): \"keep-both\" recommends "
        "neither for deletion, \"keep-raw\" lets the JPEG go", _one_of("keep-both", "keep-raw"))


@dataclass(frozen=True)
class RulesConfig:
    prefer: str = setting("", "which copy to keep first: \"\" (the best copy), \"raw\", \"largest\", \"oldest\" or \"newest\"",
                          _one_of("", "raw", "largest", "oldest", "newest"))
    keep_from: list[str] = setting([], "folders whose photos are kept over their copies elsewhere")
    never_delete_from: list[str] = setting([], "folders whose photos are never recommended for deletion")


@dataclass(frozen=True)
class TrashConfig:
    dir: str = setting("", "where removed photos go (empty: a .dupligone-trash folder in each library, same filesystem)")
    retention_days: float = setting(30.0, "trash older than this is purged for good", _not_negative)


@dataclass(frozen=True)
class CleanupConfig:
    daily_at: str = setting("03:30", "time of day of the scheduled cleanup (local time)", _hhmm)
    reviewed_session_days: float = setting(90.0, "reviewed sessions and their groups are removed after this long", _not_negative)
    gone_photo_days: float = setting(7.0, "index rows of files that vanished are removed after this long", _not_negative)


@dataclass(frozen=True)
class WebConfig:
    host: str = setting("127.0.0.1", "address the review page listens on")
    port: int = setting(8765, "port of the review page", _between(1, 65535))
    password_hash: str | None = setting(None, "hash written by `dupligone set-password`", secret=True)
    enabled: bool = setting(True, "serve the review page from the daemon")
    max_upload_mb: float = setting(200.0, "largest photo accepted by a web upload", _positive)
    max_upload_files: int = setting(5000, "most photos in one web upload", _between(1, 1_000_000))
    preview_ttl_s: float = setting(900.0, "how long a full-size preview link stays valid", _positive)
    login_days: float = setting(30.0, "how long a login on the review page lasts", _positive)
    allowed_hosts: list[str] = setting(
        [], "names the review page answers to besides IP addresses, localhost, web.host and this machine's name")
    upload_dir: str = setting("", "library folder web uploads go into (empty: \"DupliGone uploads\" in the first library)")


@dataclass(frozen=True)
class AzureConfig:
    container: str = setting("dupligone", "blob container of the mirror")
    connection_string: str | None = setting(None, "Azure Storage connection string", secret=True)
    connection_string_file: str | None = setting(None, "a file holding the connection string instead")
    connection_string_env: str | None = setting(
        None, "an environment variable holding the connection string instead (e.g. from systemd)")


@dataclass(frozen=True)
class MongoConfig:
    uri: str = setting("mongodb://127.0.0.1:27017", "MongoDB URI of the index mirror", secret=True)
    database: str = setting("dupligone", "database of the index mirror")


@dataclass(frozen=True)
class Config:
    state_dir: str = setting("", "index, queue, thumbnails (empty: $STATE_DIRECTORY under systemd, else ~/.local/state/dupligone)")
    log_level: str = setting("info", "\"debug\", \"info\", \"warning\" or \"error\"", _one_of("debug", "info", "warning", "error"))
    state_min_free_mb: float = setting(
        200.0, "below this much free space in state_dir the daemon pauses analysis (the page stays up) until space returns",
        _not_negative)
    index_backup_every_h: float = setting(
        6.0, "an online backup of the index (state_dir/index.backup.db) this often (0: never)", _not_negative)
    libraries: list[LibraryConfig] = setting([], "the watched photo folders, one [[libraries]] table each")
    watch: WatchConfig = setting(WatchConfig(), "watching folders")
    queue: QueueConfig = setting(QueueConfig(), "the work queue")
    analysis: AnalysisConfig = setting(AnalysisConfig(), "analysing photos")
    sessions: SessionsConfig = setting(SessionsConfig(), "sessions")
    cluster: ClusterConfig = setting(ClusterConfig(), "grouping")
    keeper: KeeperConfig = setting(KeeperConfig(), "choosing the photo to keep")
    rules: RulesConfig = setting(RulesConfig(), "your rules for which copy to keep (the review page can change them)")
    trash: TrashConfig = setting(TrashConfig(), "trash")
    cleanup: CleanupConfig = setting(CleanupConfig(), "cleanup")
    web: WebConfig = setting(WebConfig(), "the review page")
    azure: AzureConfig | None = setting(None, "Azure Blob mirror (absent: off)")
    mongo: MongoConfig | None = setting(None, "MongoDB index mirror (absent: off)")
    # Where this config came from (not a setting).
    source: str = field(default="", compare=False, metadata={"internal": True})

    # Derived paths, all inside state_dir.
    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def index_path(self) -> Path:
        return self.state_path / "index.db"

    @property
    def index_backup_path(self) -> Path:
        return self.state_path / "index.backup.db"

    @property
    def queue_path(self) -> Path:
        return self.state_path / "queue.db"

    @property
    def thumbs_path(self) -> Path:
        return self.state_path / "thumbs"

    @property
    def inbox_path(self) -> Path:
        """Where web uploads land, one sub-folder per upload session: ``[web] upload_dir``, a
        folder inside a library (default ``DupliGone uploads`` in the first), never the state folder."""
        if self.web.upload_dir:
            return Path(self.web.upload_dir)
        if self.libraries:
            return Path(self.libraries[0].path) / UPLOAD_FOLDER
        return self.state_path / "inbox"  # no library: nothing is watched, uploads are refused


UPLOAD_FOLDER = "DupliGone uploads"

SECTION_CLASSES: dict[str, type] = {
    "rules": RulesConfig, "watch": WatchConfig, "queue": QueueConfig, "analysis": AnalysisConfig, "sessions": SessionsConfig,
    "cluster": ClusterConfig, "keeper": KeeperConfig, "trash": TrashConfig, "cleanup": CleanupConfig,
    "web": WebConfig, "azure": AzureConfig, "mongo": MongoConfig,
}


# ---------------------------------------------------------------- loading

def _type_problem(value: Any, tp: Any) -> str | None:
    if tp is bool:
        return None if isinstance(value, bool) else f"must be true or false (got {value!r})"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"must be a whole number (got {value!r})"
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"must be a number (got {value!r})"
    if tp is str:
        return None if isinstance(value, str) else f"must be a string (got {value!r})"
    return None


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _build(cls: type, raw: Mapping[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
            problems.append(f"At '{prefix}{key}': unknown key{hint}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        if name not in raw:
            continue
        key = f"{prefix}{name}"
        value = raw[name]
        tp, _optional = _unwrap_optional(hints[name])
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                problems.append(f"At '{key}': must be a table [{key}] (got {value!r})")
                continue
            values[name] = _build(tp, value, key + ".", problems)  # type: ignore[arg-type]
            continue
        if typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"At '{key}': must be a list of strings (got {value!r})")
                continue
            values[name] = list(value)
            continue
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                problems.append(f"At '{key}': must be a list of [[{key}]] tables")
                continue
            values[name] = [_build(item, v, f"{key}[{i}].", problems) for i, v in enumerate(value)]
            continue
        problem = _type_problem(value, tp)
        if problem is None and tp is float:
            value = float(value)
        if problem is None and f.metadata.get("check"):
            problem = f.metadata["check"](value)
        if problem:
            problems.append(f"At '{key}': {problem}")
            continue
        values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        problems.append(f"At '{prefix.rstrip('.') or 'top level'}': {exc}")
        return cls()


def default_state_dir() -> str:
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "dupligone")


def _resolve(base: Path, p: str) -> str:
    return str((base / os.path.expanduser(p)).resolve()) if p else p


def parse_config(raw: Mapping[str, Any], base_dir: str | Path = ".", source: str = "") -> Config:
    """A ``Config`` from parsed TOML. Raises ``ConfigError`` listing every problem."""
    problems: list[str] = []
    cfg: Config = _build(Config, raw, "", problems)
    base = Path(base_dir)
    libs = []
    seen: dict[str, int] = {}
    for i, lib in enumerate(cfg.libraries):
        if not lib.path:
            problems.append(f"At 'libraries[{i}].path': is required (the folder to watch)")
            continue
        path = _resolve(base, lib.path)
        if path in seen:
            problems.append(f"At 'libraries[{i}].path': {path} is already libraries[{seen[path]}]")
        seen[path] = i
        libs.append(dataclasses.replace(lib, path=path))
    c = cfg.cluster
    if c.eps_min > c.eps_max:
        problems.append(f"At 'cluster.eps_min': must not exceed cluster.eps_max ({c.eps_min} > {c.eps_max})")
    k = cfg.keeper
    if k.weight_sharpness + k.weight_brightness + k.weight_contrast + k.weight_faces <= 0:
        problems.append("At 'keeper.weight_sharpness': at least one quality weight must be > 0")
    if cfg.azure is not None and not (cfg.azure.connection_string or cfg.azure.connection_string_file
                                      or cfg.azure.connection_string_env):
        problems.append("At 'azure.connection_string': set it, 'azure.connection_string_file' or "
                        "'azure.connection_string_env' (or drop the [azure] table)")
    if problems:
        raise ConfigError(problems, source)
    upload = _resolve(base, cfg.web.upload_dir)
    if upload and not any(upload == lib.path or upload.startswith(lib.path.rstrip(os.sep) + os.sep) for lib in libs):
        problems.append(f"At 'web.upload_dir': {upload} is not inside a library; uploads go into a library folder "
                        "(leave it empty for 'DupliGone uploads' in the first library)")
    rules = dataclasses.replace(cfg.rules, keep_from=[_resolve(base, p) for p in cfg.rules.keep_from],
                                never_delete_from=[_resolve(base, p) for p in cfg.rules.never_delete_from])
    if problems:
        raise ConfigError(problems, source)
    # Resolved, like every path: moves refuse paths with a symbolic link on the way.
    state = _resolve(base, cfg.state_dir) if cfg.state_dir else os.path.realpath(default_state_dir())
    trash = _resolve(base, cfg.trash.dir) if cfg.trash.dir else ""
    return dataclasses.replace(
        cfg, libraries=libs, state_dir=state, trash=dataclasses.replace(cfg.trash, dir=trash), source=source,
        web=dataclasses.replace(cfg.web, upload_dir=upload), rules=rules,
    )


def load_config(path: str | Path) -> Config:
    """Read and check a TOML config file. Raises ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read {p}: {exc.strerror or exc}"], str(p)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(p)) from None
    return parse_config(raw, p.resolve().parent, str(p.resolve()))


def config_search_path() -> list[Path]:
    out = []
    if os.environ.get("DUPLIGONE_CONFIG"):
        out.append(Path(os.environ["DUPLIGONE_CONFIG"]))
    out.append(Path("/etc/dupligone/dupligone.toml"))
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    out.append(Path(xdg) / "dupligone" / "dupligone.toml")
    return out


def find_config(explicit: str | None) -> Path:
    """The config file to use: ``--config``, ``$DUPLIGONE_CONFIG``, /etc, then the user's config dir."""
    if explicit:
        if not Path(explicit).is_file():
            raise ConfigError([f"no such config file: {explicit}"], explicit)
        return Path(explicit)
    for cand in config_search_path():
        if cand.is_file():
            return cand
    tried = ", ".join(str(c) for c in config_search_path())
    raise ConfigError([f"no config file found (tried {tried}); pass --config FILE or copy dupligone.example.toml"])


# ---------------------------------------------------------------- showing

def mask_url(url: str) -> str:
    """``redis://:secret@host`` → ``redis://:***@host``."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0] if ":" in creds else ""
        return f"{scheme}://{user}:***@{host}"
    return url


def _mask(value: Any) -> Any:
    if value is None or value == "":
        return value
    # Only a value that is a URL keeps its host; an Azure connection string holds URLs too
    # (``BlobEndpoint=http://…``) but is a secret as a whole.
    scheme = value.split("://", 1)[0] if isinstance(value, str) and "://" in value else ""
    if scheme and all(c.isalnum() or c in "+.-" for c in scheme):
        return mask_url(str(value))
    return "***"


def to_dict(obj: Any, *, mask: bool = True) -> dict[str, Any]:
    """The effective config as plain data, secrets masked unless ``mask`` is false."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("internal"):
            continue
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v, mask=mask)
        elif isinstance(v, list):
            out[f.name] = [to_dict(x, mask=mask) for x in v]
        elif mask and f.metadata.get("secret"):
            out[f.name] = _mask(v)
        else:
            out[f.name] = v
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def to_toml(cfg: Config, *, mask: bool = True) -> str:
    """The effective config as TOML text (what ``check-config`` prints)."""
    data = to_dict(cfg, mask=mask)
    lines = [f"# effective configuration{' from ' + cfg.source if cfg.source else ''}"]
    tables = []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif isinstance(v, list) or v is None:
            continue
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for lib in data["libraries"]:
        lines += ["", "[[libraries]]"] + [f"{k} = {_toml_value(x)}" for k, x in lib.items()]
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(x)}" if x is not None else f"# {k} = (not set)" for k, x in table.items()]
    for name in ("azure", "mongo"):
        if data.get(name) is None:
            lines += ["", f"# [{name}] not configured: off"]
    return "\n".join(lines) + "\n"


def describe() -> list[tuple[str, Any, str, bool]]:
    """(dotted key, default, help, secret) of every setting, for docs and the sync test."""
    out: list[tuple[str, Any, str, bool]] = []

    def walk(cls: type, prefix: str) -> None:
        inst = cls()
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            tp, _ = _unwrap_optional(hints[f.name])
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
            elif typing.get_origin(tp) is list and typing.get_args(tp) != (str,):
                (item,) = typing.get_args(tp)
                walk(item, f"{prefix}{f.name}[].")
            else:
                out.append((prefix + f.name, getattr(inst, f.name), f.metadata.get("help", ""), bool(f.metadata.get("secret"))))

    walk(Config, "")
    return out
