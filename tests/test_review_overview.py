"""The overview's uncertainty, filters and order, and the differences in words (services/review.py)."""

from __future__ import annotations

from typing import Any

from dupligoned.services import review


def photo(pid: int, path: str, verdict: str, reason: str, *, w: int = 4000, h: int = 3000, sharp: float = 100.0,
          noise: float = 1.0, score: float = 0.6, size: int = 3_000_000) -> dict[str, Any]:
    return {"id": pid, "path": path, "name": path.rsplit("/", 1)[-1], "verdict": verdict, "reason": reason,
            "width": w, "height": h, "size_bytes": size, "format": "JPEG", "jpeg_quality": 92, "camera": "Cam",
            "noise": noise, "quality": {"sharpness": sharp, "brightness": 120.0, "contrast": 50.0, "score": score}}


def group(position: int, photos: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"id": 100 + position, "position": position, "photos": photos,
            "freed_bytes": sum(p["size_bytes"] for p in photos if p["verdict"] == "delete"), **kw}


def test_uncertain_groups_first_with_why_and_filters() -> None:
    clear = group(0, [photo(1, "/l/A/a.jpg", "keep", "best copy"),
                      photo(2, "/l/B/a.jpg", "delete", "identical copy of a.jpg")])
    flagged = group(1, [photo(3, "/l/A/b.jpg", "keep", "best copy"),
                        photo(4, "/l/A/b2.jpg", "delete", "re-saved copy of b.jpg (JPEG quality 80 vs 92)")],
                    keeper_uncertain=True)
    larger = group(2, [photo(5, "/l/C/c.jpg", "keep", "best copy", w=2000, h=1500),
                       photo(6, "/l/C/c2.jpg", "delete", "lower resolution ...", w=4000, h=3000)])
    ov = review.overview([clear, flagged, larger])
    assert [c["group"]["position"] for c in ov["cards"]] == [1, 2, 0] and ov["uncertain"] == 2
    assert ov["cards"][0]["uncertain"] == ["the keeper's choice was close"]
    assert "more pixels than the kept photo" in ov["cards"][1]["uncertain"][0]
    assert [c["group"]["position"] for c in review.overview([clear, flagged, larger], order="position")["cards"]] == [0, 1, 2]
    only = review.overview([clear, flagged, larger], reason="identical copy")["cards"]
    assert [c["group"]["position"] for c in only] == [0]
    assert [c["group"]["position"] for c in review.overview([clear, flagged, larger], folder="/l/C")["cards"]] == [2]


def test_differences_in_words_against_the_keeper() -> None:
    keeper = photo(1, "/l/a.jpg", "keep", "best copy")
    small = photo(2, "/l/s.jpg", "delete", "lower resolution", w=2000, h=1500, sharp=8.0, noise=4.2, size=300_000)
    words = review.differences(small, keeper)
    assert words[0] == "a quarter of the pixels"
    assert "12.5x blurrier" in words and "4.2x noisier" in words and "-90% file size" in words
    # A figure the reason already gives (measured closer) is not repeated with another value.
    blurred = photo(3, "/l/b.jpg", "delete", "blurrier copy of a.jpg (sharpness 9 vs 79)", sharp=60.0)
    assert not any("blurr" in w or "sharp" in w for w in review.differences(blurred, keeper))
