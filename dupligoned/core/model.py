"""Value objects shared by the core, the services and the shells."""

from __future__ import annotations

from dataclasses import dataclass, field

from dupligoned.core.quality import Quality


@dataclass(frozen=True)
class PhotoInfo:
    """Everything the engine knows about one analysed photo. Sizes are after EXIF orientation."""

    path: str
    size_bytes: int
    width: int
    height: int
    format: str
    lossless: bool
    jpeg_quality: int | None
    content_hash: str
    phash: int
    dhash: int
    quality: Quality
    taken_at: str | None = None
    camera: str | None = None
    has_gps: bool = False
    # An editor named in the EXIF, or "saved again after capture": not the file the camera wrote.
    edited_by: str | None = None
    protected: bool = False
    # Room for later stages (local features for crops): name -> opaque value.
    extra: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def dims(self) -> str:
        return f"{self.width}×{self.height}"


@dataclass(frozen=True)
class Verdict:
    """One photo's fate inside a group, with a reason a person can read."""

    path: str
    keep: bool
    reason: str


@dataclass(frozen=True)
class GroupDecision:
    members: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    # Faces counted while deciding, as (path, count): only between distinct shots, where the
    # quality score ranks them. Photos not in here were not looked at for faces.
    faces: tuple[tuple[str, int], ...] = ()
    # The keeper rests on weak or conflicting evidence: the review page lists such groups first.
    uncertain: bool = False
    # The members were ranked by their quality score (distinct shots, the frames of a burst),
    # which counts faces; copies of one shot are not.
    by_quality: bool = False

    @property
    def keep(self) -> list[str]:
        return [v.path for v in self.verdicts if v.keep]

    @property
    def delete(self) -> list[str]:
        return [v.path for v in self.verdicts if not v.keep]
