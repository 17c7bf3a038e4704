"""The generator that ships inside the package: it is there, says how it was made, and inpaints."""
import torch

from nfinpaint import baselines, data, masks
from nfinpaint.generator_io import fill, open_generator, shipped_default
from nfinpaint.metrics import batch_psnr


def _shipped():
    path = shipped_default()
    assert path is not None, "nfinpaint/weights/default_generator.pt is not installed with the package"
    return path, open_generator(None)


def test_the_shipped_generator_is_small_and_says_how_it_was_trained():
    path, loaded = _shipped()
    assert path.stat().st_size < 10 * 2**20
    shipped = loaded.meta["shipped"]
    assert shipped["steps"] == loaded.meta["step"] and loaded.meta["complete"] is True
    assert "untrained" in shipped["feature_network"] and loaded.meta["feature_pretrained"] is False
    assert shipped["data"] and shipped["evaluations"], "the meta names the data and the test-split numbers"
    for evaluation in shipped["evaluations"].values():
        assert {"gan", "biharmonic", "patchmatch", "border-mean"} <= set(evaluation["methods"])
    assert all(v.dtype == torch.float16 for v in torch.load(path, weights_only=True)["state_dict"].values()
               if v.is_floating_point())


def test_the_shipped_generator_fills_unseen_crops_far_better_than_the_mean_colour():
    # the embedded scikit-image photographs are not in the corpus it was trained on
    _, loaded = _shipped()
    _, val = data.build_datasets(None, loaded.image_size, seed=11)
    images = torch.stack([val[i] for i in range(len(val))])
    holes = masks.make_masks("random", len(images), loaded.image_size, loaded.hole_size,
                             torch.Generator().manual_seed(int(torch.randint(0, 2**31, ()))))
    gan = batch_psnr(fill(loaded.generator, images, holes), images, holes)
    floor_fill = torch.stack([baselines.border_mean_fill(image, hole) for image, hole in zip(images, holes)])
    floor = batch_psnr(floor_fill, images, holes)
    assert float(gan.mean()) > float(floor.mean()) + 3.0
    assert float((gan > floor).float().mean()) > 0.8
