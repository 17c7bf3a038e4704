"""Data pipeline: crops, augmentation, the held-out split, folders, bad input."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nfinpaint import data
from nfinpaint.data import DataError, DataWarning, build_datasets, folder_dataset
from nfinpaint.files import write_marker


def _coordinate_image(height, width, k):
    """R = x/(W-1), G = y/(H-1), B = image id: every pixel says where it came from."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x / (width - 1), y / (height - 1), np.full_like(x, k / 2.0, dtype=float)], axis=-1)
    return Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))


def _decode(item, height, width):
    xs = item[0].flatten() * (width - 1)
    ys = item[1].flatten() * (height - 1)
    return xs, ys


@pytest.fixture
def coordinate_folder(tmp_path):
    sizes = [(120, 160), (150, 130)]
    for k, (h, w) in enumerate(sizes):
        _coordinate_image(h, w, k).save(tmp_path / f"img{k}.png")
    return tmp_path, sizes


def test_items_are_float_crops_in_unit_range():
    train, val = build_datasets(None, 16, seed=3)
    for ds in (train, val):
        for i in (0, len(ds) - 1):
            item = ds[i]
            assert item.shape == (3, 16, 16) and item.dtype == torch.float32
            assert 0.0 <= float(item.min()) and float(item.max()) <= 1.0
    assert len(train) >= 1024 and len(val) > 20


def test_split_is_deterministic_and_depends_on_the_seed():
    _, val_a = build_datasets(None, 16, seed=1)
    _, val_b = build_datasets(None, 16, seed=1)
    _, val_c = build_datasets(None, 16, seed=2)
    assert torch.equal(torch.stack(list(val_a)), torch.stack(list(val_b)))
    assert val_a.crops != val_c.crops


def test_training_crops_never_touch_the_validation_region(coordinate_folder):
    folder, sizes = coordinate_folder
    train, val = build_datasets(str(folder), 16, seed=5, max_crop_scale=4.0)
    assert isinstance(train, data.RandomCrops)
    boxes = train.holdout
    assert all(b is not None for b in boxes)
    for i in range(150):
        item = train[(i % 3, i)]
        k = int(round(float(item[2].mean()) * 2))
        xs, ys = _decode(item, *sizes[k])
        b = boxes[k]
        inside = (xs > b.left + 1) & (xs < b.left + b.width - 2) & (ys > b.top + 1) & (ys < b.top + b.height - 2)
        assert not bool(inside.any()), f"training crop {i} of image {k} reaches into the validation box {b}"
    for item in val:
        k = int(round(float(item[2].mean()) * 2))
        xs, ys = _decode(item, *sizes[k])
        b = boxes[k]
        assert float(xs.min()) >= b.left - 1 and float(xs.max()) <= b.left + b.width
        assert float(ys.min()) >= b.top - 1 and float(ys.max()) <= b.top + b.height


def test_augmentation_flips_and_rotates_only_when_asked(coordinate_folder):
    folder, _ = coordinate_folder
    plain, _ = build_datasets(str(folder), 16, seed=0, augment=False)
    augmented, val = build_datasets(str(folder), 16, seed=0, augment=True, max_rotation=30)
    def orientation(item):
        dx = float((item[0, :, -1] - item[0, :, 0]).mean())    # R along a row: + unless mirrored
        tilt = float((item[1, :, -1] - item[1, :, 0]).abs().mean())  # G along a row: 0 unless rotated
        return dx, tilt
    plain_o = [orientation(plain[i]) for i in range(40)]
    assert all(dx > 0 and tilt < 0.01 for dx, tilt in plain_o)
    aug_o = [orientation(augmented[i]) for i in range(40)]
    assert any(dx < 0 for dx, _ in aug_o) and any(dx > 0 for dx, _ in aug_o)   # mirrored sometimes
    assert sum(tilt > 0.02 for _, tilt in aug_o) > 20                          # rotated mostly
    # validation items are never augmented
    assert all(o[0] > 0 and o[1] < 0.01 for o in map(orientation, val))


def test_items_are_a_function_of_seed_epoch_and_index():
    train, _ = build_datasets(None, 16, seed=0)
    again, _ = build_datasets(None, 16, seed=0)
    assert torch.equal(train[(2, 17)], again[(2, 17)])
    assert not torch.equal(train[(2, 17)], train[(3, 17)])
    assert torch.equal(train[17], again[(0, 17)])                # a plain index is epoch 0's


def test_store_crops_against_torch_reference():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 50, generator=gen)
    store = data.ImageStore([image], 6)
    exact = (image * 255 + 0.5).floor() / 255            # the store keeps 8 bits
    top, left, side = 7, 11, 12
    ref = exact[:, top:top + side, left:left + side]
    cy, cx = top + side / 2, left + side / 2

    def crop(angle, flip, size=side, side=side):
        t = lambda v: torch.tensor([float(v)])  # noqa: E731
        return store.sample(torch.tensor([0]), t(cy), t(cx), t(side), t(angle), torch.tensor([flip]), size)[0]

    torch.testing.assert_close(crop(0.0, False), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(crop(0.0, True), ref.flip(-1), atol=1e-5, rtol=0)
    # +90 degrees maps output (row r, col c) to source offset (y, x) = (c', -r'): torch.rot90 k=1 on (H, W)
    torch.testing.assert_close(crop(math.pi / 2, False), torch.rot90(ref, 1, dims=(1, 2)), atol=1e-5, rtol=0)


def test_store_downscaled_crops_match_an_antialiased_resize():
    # a smooth image: pyramid levels and a direct antialiased resize agree to 8-bit rounding
    y, x = torch.meshgrid(torch.linspace(0, 3, 96), torch.linspace(0, 2, 128), indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(x + y), 0.5 + 0.4 * torch.cos(2 * x), 0.5 + 0.3 * torch.sin(y)])
    store = data.ImageStore([image], 8)
    top, left, side, size = 16, 40, 48, 12                # 4x downscale: taken from the 1/4 level
    got = store.sample(torch.tensor([0]), torch.tensor([top + side / 2]), torch.tensor([left + side / 2]),
                       torch.tensor([float(side)]), torch.tensor([0.0]), torch.tensor([False]), size)[0]
    want = data.crop_resize(image, top, left, side, size)
    torch.testing.assert_close(got, want, atol=0.02, rtol=0)


def test_large_folders_split_by_file(tmp_path):
    for i in range(data.FILE_SPLIT_MIN):
        Image.fromarray(np.full((20, 24, 3), i * 10, np.uint8)).save(tmp_path / f"{i:02d}.jpg")
    train, val = build_datasets(str(tmp_path), 16, val_fraction=0.1, seed=0)
    assert isinstance(train, data.RandomCrops) and len(train.store) == 18 and len(val) == 2
    assert not set(train.store.names) & set(val.names)
    _, val2 = build_datasets(str(tmp_path), 16, val_fraction=0.1, seed=0)
    assert val2.names == val.names
    colours = {int(round(float(val[i].mean()) * 255)) for i in range(2)}
    assert colours == {int(Path(name).stem) * 10 for name in val.names}
    # training crops come from the training files only
    train_colours = {int(round(float(item.mean()) * 255)) for item in train.crops(torch.arange(200))}
    assert train_colours == {int(Path(name).stem) * 10 for name in train.store.names}


def test_a_small_validation_share_of_a_large_folder_holds_out_one_file(tmp_path):
    """20 files at val_fraction 0.02 rounded to no validation file: the run trained unvalidated, silently."""
    for i in range(data.FILE_SPLIT_MIN):
        Image.fromarray(np.full((20, 24, 3), i * 10, np.uint8)).save(tmp_path / f"{i:02d}.jpg")
    train, val = build_datasets(str(tmp_path), 16, val_fraction=0.02, seed=0)
    assert len(train.store) == data.FILE_SPLIT_MIN - 1 and len(val) == 1
    train, val = build_datasets(str(tmp_path), 16, val_fraction=0.0, seed=0)
    assert len(train.store) == data.FILE_SPLIT_MIN and len(val) == 0


def test_a_validation_share_that_leaves_no_training_file_is_refused(tmp_path):
    """20 files at val_fraction 0.98 held out all 20: an IndexError while naming the first training file."""
    for i in range(data.FILE_SPLIT_MIN):
        Image.fromarray(np.full((20, 24, 3), i * 10, np.uint8)).save(tmp_path / f"{i:02d}.jpg")
    with pytest.raises(data.DataError, match="val_fraction = 0.98 holds out all 20 image files"):
        build_datasets(str(tmp_path), 16, val_fraction=0.98, seed=0)
    train, val = build_datasets(str(tmp_path), 16, val_fraction=0.95, seed=0)   # 19 of 20: one to train on
    assert len(train.store) == 1 and len(val) == 19


def test_a_validation_folder_replaces_the_split(tmp_path):
    for split, colours in (("train", (10, 20, 30)), ("val", (200, 220))):
        (tmp_path / split).mkdir()
        for c in colours:
            Image.fromarray(np.full((40, 40, 3), c, np.uint8)).save(tmp_path / split / f"{c}.png")
    train, val = build_datasets(str(tmp_path / "train"), 16, seed=0, val_dir=str(tmp_path / "val"))
    assert len(train.store) == 3
    assert {int(round(float(v.mean()) * 255)) for v in val} == {200, 220}
    assert {int(round(float(t.mean()) * 255)) for t in train.crops(torch.arange(100))} == {10, 20, 30}
    with pytest.raises(DataError, match="also in the training folder"):
        build_datasets(str(tmp_path / "train"), 16, val_dir=str(tmp_path / "train"))


@pytest.mark.parametrize("how", ["copy", "hard link"])
def test_a_validation_folder_holding_a_training_image_is_refused(tmp_path, how):
    """Only the same path was refused: a validation folder made by copying the training folder, or of
    hard links to its files, validated on what it trained on, without a word."""
    import shutil

    rng = np.random.default_rng()
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "train" / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "val" / "own.png")
    shared = tmp_path / "train" / f"{rng.integers(4)}.png"
    (shutil.copyfile if how == "copy" else os.link)(shared, tmp_path / "val" / "renamed.png")
    with pytest.raises(DataError, match=r"1 file\(s\) of the validation folder are also in the training folder"):
        build_datasets(str(tmp_path / "train"), 16, val_dir=str(tmp_path / "val"))
    (tmp_path / "val" / "renamed.png").unlink()
    build_datasets(str(tmp_path / "train"), 16, val_dir=str(tmp_path / "val"))


def test_copies_in_one_folder_are_taken_once_so_the_split_cannot_straddle_them(tmp_path):
    import shutil

    rng = np.random.default_rng()
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / f"{i:02d}.png")
    for i in range(0, 24, 2):           # every other picture twice more: a copy and a hard link
        shutil.copyfile(tmp_path / f"{i:02d}.png", tmp_path / f"copy_{i:02d}.png")
        os.link(tmp_path / f"{i:02d}.png", tmp_path / f"link_{i:02d}.png")
    with pytest.warns(DataWarning, match="dropped 24 file\\(s\\) identical to another one"):
        files = data.find_image_files(tmp_path)
    assert sorted(p.name for p in files) == [f"{i:02d}.png" for i in range(24)]


def test_a_folder_that_cannot_be_listed_is_said(tmp_path, monkeypatch):
    """os.walk skipped an unreadable subfolder without a word, and an unreadable folder itself read as
    'no image files found'."""
    for folder in ("open", "locked"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / folder / "a.png")
    real = os.scandir
    locked = {str(tmp_path / "locked")}

    def scandir(path="."):
        if str(path) in locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(DataWarning, match=r"skipping .*locked: the folder cannot be listed \(Permission denied\)"):
        assert [p.parent.name for p in data.find_image_files(tmp_path)] == ["open"]
    locked.add(str(tmp_path))
    with pytest.raises(DataError, match="the folder cannot be listed"):
        data.find_image_files(tmp_path)


def test_folder_dataset_centre_crops_every_readable_image(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "b.png")
    sub = tmp_path / "sub"
    sub.mkdir()
    Image.fromarray(big[:, :30]).convert("L").save(sub / "a.png")
    (tmp_path / "notes.txt").write_text("not an image, not a warning")
    ds = folder_dataset(str(tmp_path), 30)
    assert ds.names == [str(tmp_path / "b.png"), str(sub / "a.png")]
    torch.testing.assert_close(ds[0], torch.from_numpy(big[:, 5:35]).permute(2, 0, 1).float() / 255)
    assert ds[1].shape == (3, 30, 30)
    assert torch.equal(ds[1][0], ds[1][1])   # grey promoted to RGB


def test_unreadable_files_are_reported_and_skipped(tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.warns(DataWarning, match=r"broken\.jpg"):
        ds = folder_dataset(str(tmp_path), 16)
    assert len(ds) == 1
    with pytest.warns(DataWarning, match=r"broken\.jpg"):
        train, _ = build_datasets(str(tmp_path), 16, val_fraction=0.0)
    assert len(train) > 0


def test_a_file_that_fails_to_decode_is_skipped(tmp_path):
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(tmp_path / "a.png")
    truncated = tmp_path / "b.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])   # header intact (passes the probe), pixels missing
    with pytest.warns(DataWarning, match=r"b\.png"):
        train, _ = build_datasets(str(tmp_path), 16, val_fraction=0.0, augment=False, max_crop_scale=1)
    torch.testing.assert_close(train.crops(torch.arange(4)), torch.full((4, 3, 16, 16), 200 / 255))


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"),
    ("empty", "no image files found"),
    ("unreadable", "none of the 1 image files could be read"),
    ("small", r"tiny\.png is 10x12 pixels, smaller than the 16x16 crop"),
])
def test_bad_folders_are_clear_errors(tmp_path, case, message):
    folder = tmp_path / "data"
    if case != "missing":
        folder.mkdir()
    if case == "unreadable":
        (folder / "x.png").write_text("nope")
    if case == "small":
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(folder / "tiny.png")
    with pytest.warns(DataWarning) if case == "unreadable" else _no_warning():
        with pytest.raises(DataError, match=message):
            build_datasets(str(folder), 16)
    # evaluation skips an image smaller than the crop, with a warning naming it
    if case == "small":
        message = r"none of the 1 image files could be read at 16x16 or larger"
    with pytest.warns(DataWarning, match="tiny.png" if case == "small" else "") \
            if case in ("unreadable", "small") else _no_warning():
        with pytest.raises(DataError, match=message):
            folder_dataset(str(folder), 16)


def test_evaluation_folder_skips_images_smaller_than_the_crop(tmp_path):
    rng = np.random.default_rng()
    Image.fromarray(rng.integers(0, 256, (20, 18, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    Image.fromarray(rng.integers(0, 256, (12, 30, 3), dtype=np.uint8)).save(tmp_path / "tiny.png")
    with pytest.warns(DataWarning, match=r"tiny\.png: 30x12 pixels, smaller than the 16x16 crop"):
        dataset = folder_dataset(str(tmp_path), 16)
    assert dataset.names == [str(tmp_path / "big.png")] and dataset[0].shape == (3, 16, 16)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_images_too_small_for_a_validation_region(tmp_path):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="too small to hold out"):
        build_datasets(str(tmp_path), 16, val_fraction=0.1)
    train, val = build_datasets(str(tmp_path), 16, val_fraction=0.0)
    assert len(val) == 0 and train[0].shape == (3, 16, 16)


def _scan_case(folder, case):
    """Three images, and what ``case`` adds to the folder; returns the warning expected."""
    (folder / "sub").mkdir()
    for k, name in enumerate(("a.png", "b.png", "sub/c.png")):
        Image.fromarray(np.full((20, 20, 3), 60 * k, np.uint8)).save(folder / name)
    if case == "link loop":
        (folder / "sub" / "loop").symlink_to("..")
        return r"dropped \d+ duplicate path"
    if case == "linked copies":
        (folder / "a_again.png").symlink_to(folder / "a.png")
        (folder / "mirror").symlink_to(folder / "sub")
        return "dropped 2 duplicate path"
    if case == "fifo":
        os.mkfifo(folder / "pipe.png")       # opening it to read would block forever
        return r"pipe\.png: not a regular file"
    if case == "dangling link":
        (folder / "gone.png").symlink_to(folder / "nowhere.png")
        return r"gone\.png: not a regular file"
    if case == "output folder":           # an evaluation's figures or a training run's samples
        (folder / "results" / "figures").mkdir(parents=True)
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "results" / "figures" / "grid_000.png")
        write_marker(folder / "results", "evaluation")
        return r"results: the output folder of an nfinpaint evaluation"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["link loop", "linked copies", "fifo", "dangling link", "output folder"])
def test_folder_scans_take_each_image_file_once(tmp_path, case):
    folder = tmp_path / "data"
    folder.mkdir()
    message = _scan_case(folder, case)
    with pytest.warns(DataWarning, match=message):
        files = data.find_image_files(folder)
    assert sorted(os.path.realpath(p) for p in files) == sorted(
        os.path.realpath(folder / name) for name in ("a.png", "b.png", "sub/c.png"))
    with pytest.warns(DataWarning, match=message):
        assert len(folder_dataset(str(folder), 16)) == 3


@pytest.mark.parametrize("height, width", [(48, 66), (66, 48), (60, 75)])
def test_a_small_picture_trains_whatever_the_seed(tmp_path, height, width):
    """The crop that avoids the held-out box was searched on a half-crop grid only: where the room left
    on the right or at the bottom was narrower than the grid's step from its last point (a 66x48 picture,
    24 px crops, seed 3), training stopped with a traceback on ~2% of seeds."""
    Image.fromarray(np.random.default_rng().integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        tmp_path / "photo.png")
    for seed in range(48):
        train, _ = build_datasets(str(tmp_path), 24, seed=seed, progress=False)
        store_box = train.holdout[0]
        top, left = train._fallback_centre(0)
        assert store_box is None or not store_box.intersects(int(top - 12), int(left - 12), 24, 24), seed


@pytest.mark.parametrize("height, width", [(48, 48), (50, 50), (60, 70), (30, 100), (100, 30), (200, 300)])
def test_the_held_out_box_always_leaves_room_for_a_training_crop(height, width):
    """A 48x48 image with 24 px crops: the box was placed anywhere, e.g. in the middle, leaving two strips
    of 12 px, and training died ("no room for a training crop outside its validation region")."""
    from nfinpaint.data import _val_box  # noqa: PLC0415

    size = 24
    for seed in range(200):
        box = _val_box(height, width, 0.1, size, np.random.default_rng(seed))
        if box is None:
            continue
        free = max(box.top, height - box.height - box.top, box.left, width - box.width - box.left)
        assert free >= size, (seed, box)


def test_an_unreadable_file_of_another_files_size_is_skipped_with_its_reason(tmp_path, monkeypatch):
    """Comparing files of one size reads them: one that cannot be read is no copy of anything, and is
    skipped later with the reason, not a traceback."""
    rng = np.random.default_rng()
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "b.png").write_bytes((tmp_path / "b.png").read_bytes()[:(tmp_path / "a.png").stat().st_size]
                                     .ljust((tmp_path / "a.png").stat().st_size, b"\0"))
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "b.png":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert [p.name for p in data.find_image_files(tmp_path)] == ["a.png", "b.png"]


def test_jpegs_saved_as_jfif_are_pictures(tmp_path):
    """Browsers on Windows save web pictures as .jfif: a folder of them read as holding no image."""
    rng = np.random.default_rng()
    for name in ("a.jfif", "b.JPE"):
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / name, format="JPEG")
    assert [p.name for p in data.find_image_files(tmp_path)] == ["a.jfif", "b.JPE"]
