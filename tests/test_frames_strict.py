"""Frame folders: a video's frames are the files that follow its one naming pattern; every other
file is listed as ignored; a gap longer than dataset.max_frame_gap makes the video an error
naming the missing range (docs/reliability.md, section 1)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.helpers import layout_config, write_frames
from vrme.data.frames import FrameSource, list_frames
from vrme.data.ingest import ingest
from vrme.errors import FrameError


def entries(res, subject, video):
    s = res.skipped
    return s[(s["subject"] == subject) & (s["video"] == video)]


# -- the naming pattern ------------------------------------------------------------------------


def test_a_stray_image_of_another_pattern_is_ignored_not_a_gap(tiny_casme3, tmp_path):
    color = tiny_casme3 / "data/dzw/a1/color"
    write_frames(color, [9999], name=lambda n: f"IMG_{n}.jpg")  # the example
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    row = res.manifest.set_index(["subject", "video"]).loc[("dzw", "a1")]
    assert (row.n_frames, row.first_frame, row.last_frame, row.frame_numbering) == (
        30, 0, 29, "contiguous")
    ign = entries(res, "dzw", "a1")
    assert list(ign["action"]) == ["ignored"] and ign.iloc[0]["item"] == "IMG_9999.jpg"
    assert "1 file(s) not named like the video's frames (<n>.jpg): not read" in \
        ign.iloc[0]["reason"]


@pytest.mark.parametrize("strays", [
    ["0001.jpg"],                       # zero-padded among unpadded names
    ["5.png", "6.PNG"],                 # another extension
    ["cover.jpg", "Thumbs.db", ".DS_Store", "notes.txt"],  # no number / not images
    ["30.jpeg"],                        # next number, other extension: not frame 30
    ["a1_12.jpg"],                      # another prefix
])
def test_files_that_do_not_follow_the_pattern_are_listed_and_not_read(tiny_casme3, tmp_path,
                                                                      strays):
    color = tiny_casme3 / "data/gcf/d1/color"
    for name in strays:
        (color / name).write_bytes((color / "0.jpg").read_bytes())
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    row = res.manifest.set_index(["subject", "video"]).loc[("gcf", "d1")]
    assert (row.n_frames, row.n_files, row.name_prefix, row.name_suffix, row.pad_width) == (
        30, 30, "", ".jpg", 0)
    ign = entries(res, "gcf", "d1").iloc[0]
    assert ign["action"] == "ignored" and ign["reason"].startswith(f"{len(strays)} file(s)")
    assert set(ign["item"].split(", ")) == set(strays)


def test_a_subfolder_is_not_a_file_of_the_video(tiny_casme3, tmp_path):
    (tiny_casme3 / "data/dzw/d1/color/thumbs").mkdir()
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    assert entries(res, "dzw", "d1").empty


def test_samm_frames_follow_the_video_prefix(tiny_samm, tmp_path):
    folder = tiny_samm / "SAMM_longvideos/001_2"
    write_frames(folder, [7], name=lambda n: f"001_3_{n:04d}.jpg")  # another video's frame
    write_frames(folder, [8], name=lambda n: f"001_2_{n:05d}.jpg")  # another padding
    res = ingest(layout_config("samm_lv", tiny_samm, tmp_path / "out"))
    row = res.manifest.set_index("video").loc["001_2"]
    assert (row.n_frames, row.pad_width, row.name_prefix) == (120, 4, "001_2_")
    ign = entries(res, "001", "001_2").iloc[0]
    assert ign["item"] == "001_2_00008.jpg, 001_3_0007.jpg"
    assert "(001_2_<nnnn>.jpg)" in ign["reason"]


def test_padded_numbers_wider_than_the_padding_are_the_same_pattern(tmp_path):
    numbers = [998, 999, 1000, 9999, 10000, 10001]
    write_frames(tmp_path / "v", numbers, name=lambda n: f"v_{n:04d}.jpg")
    listing = list_frames(tmp_path / "v")
    assert listing.pattern == ("v_", ".jpg", 4) and listing.ignored == []
    assert listing.numbers == numbers and listing.gaps == [(1001, 9998)]


def test_two_naming_patterns_about_as_common_are_refused(tmp_path):
    write_frames(tmp_path / "v", range(20))
    write_frames(tmp_path / "v", range(12), name=lambda n: f"img{n}.png")
    with pytest.raises(FrameError, match=r"two naming patterns, 20 file\(s\) like <n>.jpg and 12 "
                                         r"like img<n>.png"):
        list_frames(tmp_path / "v")
    write_frames(tmp_path / "w", range(20))
    write_frames(tmp_path / "w", range(3), name=lambda n: f"img{n}.png")
    assert list_frames(tmp_path / "w").ignored == ["img0.png", "img1.png", "img2.png"]


def test_unlabelled_layout_takes_the_pattern_most_files_follow(tmp_path):
    root = tmp_path / "megc"
    write_frames(root / "s1" / "v1", range(1, 25), name=lambda n: f"frame_{n:03d}.png")
    write_frames(root / "s1" / "v1", [999], name=lambda n: f"IMG_{n}.jpg")
    two = root / "s1" / "v2"
    write_frames(two, range(10))
    write_frames(two, range(10), name=lambda n: f"{n:02d}.jpg")  # 00.jpg next to 0.jpg
    res = ingest(layout_config("megc", root, tmp_path / "out"))
    v1 = res.manifest.set_index("video").loc["v1"]
    assert (v1.n_frames, v1.name_prefix, v1.pad_width, v1.name_suffix) == (24, "frame_", 3, ".png")
    assert entries(res, "s1", "v1").iloc[0]["item"] == "IMG_999.jpg"
    # '0.jpg'..'9.jpg' and '00.jpg'..'09.jpg' name the same numbers twice: refused
    assert "v2" not in set(res.manifest["video"])
    assert "two naming patterns" in entries(res, "s1", "v2").iloc[0]["reason"]


def test_no_file_of_the_pattern(tiny_casme3, tmp_path):
    color = tiny_casme3 / "data/gcf/a1/color"
    for f in color.iterdir():
        f.rename(f.with_name("IMG_" + f.name))
    empty = tiny_casme3 / "data/gcf/d1/color"
    shutil.rmtree(empty)
    empty.mkdir()
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    assert "no image files named like <n>.jpg" in entries(res, "gcf", "a1").iloc[0]["reason"]
    assert "found: IMG_0.jpg" in entries(res, "gcf", "a1").iloc[0]["reason"]
    assert "(the folder is empty)" in entries(res, "gcf", "d1").iloc[0]["reason"]


def test_the_frames_read_are_those_of_the_pattern(tmp_path):
    write_frames(tmp_path / "v", range(5), seed=1)
    write_frames(tmp_path / "v", [2], name=lambda n: f"0{n}.jpg", seed=2)  # '02.jpg'
    listing = list_frames(tmp_path / "v")
    row = {"subject": "s", "video": "v", "source": "frames", "path": "v", "first_frame": 0,
           "n_frames": 5, "name_prefix": "", "name_suffix": ".jpg", "pad_width": 0}
    assert listing.files == [f"{n}.jpg" for n in range(5)]
    assert FrameSource(row, tmp_path).frame_path(2).name == "2.jpg"


# -- gaps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing, limit, skipped", [
    ([10, 11, 12], 10, False),          # a short gap is filled, reported
    (list(range(5, 16)), 10, True),     # 11 missing > 10: the video is an error
    ([7], 0, True),                     # max_frame_gap 0: any gap is an error
    (list(range(3, 13)), 10, False),    # exactly the limit
])
def test_a_gap_longer_than_the_limit_is_an_error_naming_the_range(tiny_casme3, tmp_path,
                                                                  missing, limit, skipped):
    for n in missing:
        (tiny_casme3 / f"data/gcf/d1/color/{n}.jpg").unlink()
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out", max_frame_gap=limit))
    e = entries(res, "gcf", "d1").iloc[0]
    span = f"{missing[0]}-{missing[-1]}" if len(missing) > 1 else f"{missing[0]}"
    assert f"frames {span} ({len(missing)} missing)" in e["item"]
    if skipped:
        assert ("gcf", "d1") not in set(zip(res.manifest.subject, res.manifest.video))
        assert e["kind"] == "video" and e["action"] == "skipped"
        assert f"frame gap longer than dataset.max_frame_gap ({limit})" in e["reason"]
        label = res.skipped[(res.skipped["kind"] == "label") & (res.skipped["row"] == 8)]
        assert "is on disk but was left out: frame gap longer" in label.iloc[0]["reason"]
    else:
        assert e["reason"] == "frame gap" and e["action"].startswith("filled")


def test_a_frame_number_beyond_any_video_is_an_error_not_a_fill(tiny_casme3, tmp_path):
    color = tiny_casme3 / "data/dzw/d1/color"
    (color / "99999999999999999999.jpg").write_bytes((color / "0.jpg").read_bytes())
    res = ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    e = entries(res, "dzw", "d1").iloc[0]
    assert "dzw" not in set(res.manifest.loc[res.manifest.video == "d1", "subject"])
    assert e["action"] == "skipped" and "out of range" in e["reason"]


def test_a_lone_huge_frame_number_is_refused(tmp_path):
    write_frames(tmp_path / "v", [2**40])
    with pytest.raises(FrameError, match="out of range"):
        list_frames(tmp_path / "v")


def test_skipped_csv_lists_the_ignored_files(tiny_casme3, tmp_path):
    (tiny_casme3 / "data/dzw/a1/color/readme.txt").write_text("x")
    ingest(layout_config("casme3", tiny_casme3, tmp_path / "out"))
    sk = pd.read_csv(tmp_path / "out/ingest/skipped.csv")
    row = sk[sk["action"] == "ignored"].iloc[0]
    assert (row["kind"], row["subject"], row["video"], row["item"]) == (
        "frames", "dzw", "a1", "readme.txt")

