"""A user's own images (--dataset PATH): folders and .npz files read, checked and split."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import data
import own_images


def write_folder(root, images, labels=None, classes=None, suffix=".png"):
    """images: N x H x W (grey) or N x H x W x 3 uint8, written one file each, in class sub-folders if labelled."""
    root.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        folder = root if labels is None else root / classes[labels[i]]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:04d}{suffix}")
    return root


def digits(n=30, size=(8, 6), colour=False, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, *size, 3) if colour else (n, *size)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 3, n)


def test_a_folder_of_class_sub_folders_is_read_with_its_labels_and_a_flat_one_without(tmp_path):
    images, labels = digits()
    image_set = own_images.read_image_set(str(write_folder(tmp_path / "shapes", images, labels, ["a", "b", "c"])))
    assert image_set.name == "shapes" and image_set.classes == ["a", "b", "c"]
    assert image_set.images.shape == (30, 1, 8, 6) and image_set.images.dtype == torch.float32
    # files are read class by class; each image keeps its pixels and its label
    for image, label in zip(image_set.images, image_set.labels):
        matches = [i for i in range(30) if np.array_equal(images[i], (image[0] * 255).round().byte().numpy())]
        assert len(matches) == 1 and labels[matches[0]] == label
    flat = own_images.read_image_set(str(write_folder(tmp_path / "flat", images)))
    assert flat.labels is None and flat.classes is None
    assert torch.equal(flat.images[:, 0], torch.from_numpy(images).float() / 255)


def test_colour_images_keep_their_channels_and_grey_ones_among_them_become_colour(tmp_path):
    images, _ = digits(colour=True)
    folder = write_folder(tmp_path / "colour", images)
    Image.fromarray(images[0, :, :, 0]).save(folder / "zz_grey.png")  # one grey image in a colour set
    image_set = own_images.read_image_set(str(folder))
    assert image_set.images.shape == (31, 3, 8, 6)
    assert torch.equal(image_set.images[:30], torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    grey = image_set.images[30]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_an_npz_is_read_in_either_scale_and_resized_on_request(tmp_path):
    images, labels = digits(colour=True)
    np.savez(tmp_path / "as_bytes.npz", images=images, labels=labels, classes=np.array(["x", "y", "z"]))
    np.savez(tmp_path / "as_floats.npz", images=images.astype(np.float32) / 255)
    as_bytes, as_floats = own_images.read_image_set(str(tmp_path / "as_bytes.npz")), own_images.read_image_set(str(tmp_path / "as_floats.npz"))
    assert as_bytes.name == "as_bytes" and as_bytes.classes == ["x", "y", "z"] and as_bytes.labels.tolist() == labels.tolist()
    assert torch.allclose(as_bytes.images, as_floats.images) and as_floats.labels is None
    resized = own_images.read_image_set(str(tmp_path / "as_bytes.npz"), image_size=(4, 3))
    assert resized.images.shape == (30, 3, 4, 3) and 0 <= resized.images.min() and resized.images.max() <= 1
    # a flat image averages to about the same grey when shrunk
    np.savez(tmp_path / "flat.npz", images=np.full((12, 8, 8), 100, dtype=np.uint8))
    assert own_images.read_image_set(str(tmp_path / "flat.npz"), image_size=(4, 4)).images.mean() == pytest.approx(100 / 255, abs=1e-3)


def test_the_split_is_fixed_by_its_seed_disjoint_and_complete(tmp_path):
    images, labels = digits(n=200)
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    image_set = own_images.read_image_set(str(tmp_path / "set.npz"))
    splits = data.split_image_set(image_set)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [160, 20, 20]
    again = data.split_image_set(own_images.read_image_set(str(tmp_path / "set.npz")))
    assert all(torch.equal(splits[s].images, again[s].images) for s in splits)
    rows = {tuple(x.flatten().tolist()) for s in splits.values() for x in s.images}
    assert len(rows) == 200  # every image in exactly one split
    np.savez_compressed(tmp_path / "packed.npz", images=images, labels=labels)  # other bytes, the same images
    assert own_images.read_image_set(str(tmp_path / "packed.npz")).sha256 == image_set.sha256
    np.savez(tmp_path / "moved.npz", images=images, labels=(labels + 1) % 3)
    assert own_images.read_image_set(str(tmp_path / "moved.npz")).sha256 != image_set.sha256
    inside = os.path.join(data.PROJECT_DIR, "data", "mine.npz")
    assert data.stored_path(inside) == os.path.join("data", "mine.npz") and data.stored_path(str(tmp_path)) == str(tmp_path)
    other = data.split_image_set(image_set, seed=1)
    assert not torch.equal(other["test"].images, splits["test"].images)
    unlabelled = data.split_image_set(own_images.read_image_set(str(write_folder(tmp_path / "flat", images[:20]))))
    assert (unlabelled["train"].labels == -1).all() and len(unlabelled["test"]) == 2
    assert image_set.sha256 == own_images.read_image_set(str(tmp_path / "set.npz")).sha256


@pytest.mark.parametrize("make, message", [
    (lambda d: d.mkdir(), "no image files"),
    (lambda d: (d.mkdir(), (d / "notes.txt").write_text("hi")), "no image files"),
    (lambda d: (write_folder(d, digits(n=3)[0]), (d / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")), "0001.png: cannot be read"),
    (lambda d: (write_folder(d, digits(n=3)[0]), Image.new("L", (5, 5)).save(d / "big.png")), "2 sizes"),
    (lambda d: (write_folder(d, digits(n=3)[0]), write_folder(d / "sub", digits(n=3)[0])), "sub-folders"),
])
def test_bad_folders_are_refused_naming_what_is_wrong(tmp_path, make, message):
    make(tmp_path / "mine")
    with pytest.raises(data.DataError, match=message):
        own_images.read_image_set(str(tmp_path / "mine"))


def test_a_truncated_image_is_named(tmp_path):
    images, _ = digits(n=3, size=(64, 64))
    folder = write_folder(tmp_path / "mine", images)
    content = (folder / "0002.png").read_bytes()
    (folder / "0002.png").write_bytes(content[:len(content) // 2])
    with pytest.raises(data.DataError, match="0002.png: cannot be read"):
        own_images.read_image_set(str(folder))


@pytest.mark.parametrize("arrays, message", [
    ({"pixels": np.zeros((12, 8, 8), np.uint8)}, "no array `images`"),
    ({"images": np.zeros((12, 8), np.uint8)}, "shape"),
    ({"images": np.full((12, 8, 8), np.nan, np.float32)}, "NaN"),
    ({"images": np.full((12, 8, 8), 2.0, np.float32)}, r"\[0, 1\]"),
    ({"images": np.zeros((12, 8, 8), np.int64)}, "int64"),
    ({"images": np.zeros((12, 8, 8), np.uint8), "labels": np.zeros(11, np.int64)}, "12 non-negative integers"),
    ({"images": np.zeros((12, 8, 8), np.uint8), "labels": np.arange(12), "classes": np.array(["a"])}, "go up to 11"),
    ({"images": np.zeros((12, 8, 8), np.uint8), "classes": np.array(["a"])}, "no `labels`"),
])
def test_bad_npz_files_are_refused_naming_what_is_wrong(tmp_path, arrays, message):
    np.savez(tmp_path / "mine.npz", **arrays)
    with pytest.raises(data.DataError, match=message):
        own_images.read_image_set(str(tmp_path / "mine.npz"))


def test_a_users_images_are_read_once_and_again_when_their_files_change(tmp_path):
    path = str(tmp_path / "mine.npz")
    np.savez(path, images=np.zeros((20, 8, 8), np.uint8))
    first = data.user_image_set(path)
    assert data.user_image_set(path) is first  # not read twice
    np.savez(path, images=np.full((20, 8, 8), 255, np.uint8))
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10 ** 9))  # a later modification time, however coarse the clock
    again = data.user_image_set(path)
    assert again.sha256 != first.sha256 and again.images.min() == 1.0


def test_paths_that_are_no_dataset_are_refused(tmp_path):
    with pytest.raises(data.DataError, match="no such dataset"):
        data.user_image_set(str(tmp_path / "missing"))
    with pytest.raises(data.DataError, match="no such folder"):
        own_images.read_image_set(str(tmp_path / "missing"))
    for name in ("mnist", "Fashion-MNIST"):  # case-blind file systems would mix their files with the built-in ones
        (tmp_path / name).mkdir()
        with pytest.raises(data.DataError, match="built-in"):
            data.dataset_name(str(tmp_path / name))
    (tmp_path / "images.csv").write_text("1,2")
    with pytest.raises(data.DataError, match="nor an .npz"):
        own_images.read_image_set(str(tmp_path / "images.csv"))
    np.savez(tmp_path / "few.npz", images=np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(data.DataError, match="at least 20"):
        data.split_image_set(own_images.read_image_set(str(tmp_path / "few.npz")))


@pytest.mark.parametrize("kind", ["autoencoder", "vae"])
def test_models_take_their_image_shape_from_the_data_and_rebuild_it_from_the_file(tmp_path, kind):
    import models
    images, _ = digits(n=12, size=(8, 6), colour=True)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    model = models.build_model(kind, hidden_dims=[16], image_shape=(3, 8, 6))
    assert model.decode(model.encode(x)).shape == (12, 3, 8, 6)
    model.loss(x)["total"].backward()  # every channel of every pixel is a Bernoulli output
    models.save_checkpoint(tmp_path / "m.pt", model)
    loaded = models.load_checkpoint(tmp_path / "m.pt")
    assert loaded.image_shape == (3, 8, 6) and torch.equal(loaded.encode(x), model.eval().encode(x))
    # the MNIST family's models store no shape: their checkpoints stay as every earlier version wrote them
    assert "image_shape" not in models.build_model(kind).model_args


@pytest.mark.slow
def test_train_py_trains_both_models_on_an_npz_and_a_folder_naming_them_after_it(tmp_path):
    import models
    import train
    images, labels = digits(n=60, colour=True)
    np.savez(tmp_path / "tiles.npz", images=images, labels=labels)
    write_folder(tmp_path / "grey", digits(n=40)[0])
    for dataset, shape in ((tmp_path / "tiles.npz", (3, 8, 6)), (tmp_path / "grey", (1, 8, 6))):
        train.main(["--train_autoencoder", "--train_vae", "--epochs", "1", "--hidden_dims", "8", "--dataset", str(dataset),
                    "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")])
        name = dataset.stem
        for kind in ("autoencoder", "vae"):
            path = tmp_path / "ck" / f"{name}_{kind}.pt"
            model = models.load_checkpoint(path)
            assert model.kind == kind and model.image_shape == shape and model.dataset == name
            source = models.read_checkpoint(path)["data_source"]
            assert source["sha256"] == own_images.read_image_set(str(dataset)).sha256 and source["path"] == str(dataset)


def test_train_py_resizes_images_of_mixed_sizes_on_request_and_refuses_them_otherwise(tmp_path):
    from conftest import run_script, ROOT
    folder = write_folder(tmp_path / "mixed", digits(n=20)[0])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder / "big.png")
    common = ["--train_vae", "--epochs", "1", "--hidden_dims", "8", "--checkpoint_dir", tmp_path / "ck",
              "--logdir", tmp_path / "logs", "--dataset", folder]
    refused = run_script("train.py", *common, cwd=ROOT)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "--image_size" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "ck" / "mixed_vae.pt").exists()
    resized = run_script("train.py", *common, "--image_size", "7", "7", cwd=ROOT)
    assert resized.returncode == 0, resized.stderr
    import models
    assert models.load_checkpoint(tmp_path / "ck" / "mixed_vae.pt").image_shape == (1, 7, 7)
    missing = run_script("train.py", "--train_vae", "--dataset", tmp_path / "nowhere", cwd=ROOT)
    assert missing.returncode == 2 and "neither a built-in dataset" in missing.stderr


@pytest.mark.slow
def test_explore_draws_every_figure_for_colour_and_unlabelled_images(tmp_path):
    import explore_latent_space
    import train
    images, labels = digits(n=60, colour=True)
    np.savez(tmp_path / "tiles.npz", images=images, labels=labels, classes=np.array(["$x$", "<b>y</b>", "z"]))
    write_folder(tmp_path / "grey", digits(n=40)[0])
    for dataset in ("tiles.npz", "grey"):
        train.main(["--train_autoencoder", "--train_vae", "--epochs", "1", "--hidden_dims", "8",
                    "--dataset", str(tmp_path / dataset), "--checkpoint_dir", str(tmp_path / "ck"),
                    "--logdir", str(tmp_path / "logs")])
        explore_latent_space.main(["--dataset", str(tmp_path / dataset), "--checkpoint_dir", str(tmp_path / "ck"),
                                   "-o", str(tmp_path / "out"), "--num_points", "20", "--grid_size", "3"])
    for name in ("tiles", "grey"):
        for figure in ("outputs", "latent_dist", "latent_space", "sample_from_norm", "interpolation"):
            for model in ("auto", "vae"):
                assert (tmp_path / "out" / f"{figure}_{name}_{model}.png").stat().st_size > 0
            assert (tmp_path / "out" / f"compare_{figure}_{name}.png").exists()
    shown = np.asarray(Image.open(tmp_path / "out" / "outputs_tiles_vae.png").convert("RGB")).astype(int)
    assert (np.abs(shown[..., 0] - shown[..., 1]) > 30).sum() > 100  # the inputs are drawn in colour
    grey = np.asarray(Image.open(tmp_path / "out" / "outputs_grey_vae.png").convert("RGB")).astype(int)
    body = grey[40:-10]  # below the title
    assert np.abs(body[..., 0] - body[..., 1]).max() < 10


def test_a_model_is_not_explored_with_images_of_another_shape(tmp_path):
    from conftest import run_script, ROOT
    import train
    np.savez(tmp_path / "small.npz", images=digits(n=30)[0])
    np.savez(tmp_path / "other.npz", images=digits(n=30, size=(5, 5))[0])
    train.main(["--train_vae", "--epochs", "1", "--hidden_dims", "8", "--dataset", str(tmp_path / "small.npz"),
                "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")])
    result = run_script("explore_latent_space.py", tmp_path / "ck" / "small_vae.pt", "--dataset", tmp_path / "other.npz",
                        "-o", tmp_path / "out", cwd=ROOT)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "1 x 5 x 5" in result.stderr
    (tmp_path / "small.npz").unlink()  # moved away: the checkpoint's record no longer finds the images
    result = run_script("explore_latent_space.py", tmp_path / "ck" / "small_vae.pt", "-o", tmp_path / "out", cwd=ROOT)
    assert result.returncode == 2 and "--dataset PATH" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_evaluate_trains_a_judge_from_the_labels_or_says_which_measures_it_skips(tmp_path):
    import json
    import evaluate
    import train
    images, labels = digits(n=80, colour=True)
    np.savez(tmp_path / "tiles.npz", images=images, labels=labels)
    write_folder(tmp_path / "grey", digits(n=40)[0])
    quick = ["--iwae_k", "2", "--iwae_images", "8", "--num_samples", "50", "--quadrature"]
    for dataset in ("tiles.npz", "grey"):
        train.main(["--train_autoencoder", "--train_vae", "--epochs", "1", "--hidden_dims", "8",
                    "--dataset", str(tmp_path / dataset), "--checkpoint_dir", str(tmp_path / "ck"),
                    "--logdir", str(tmp_path / "logs")])
    judge = str(tmp_path / "judges" / "tiles_cnn.pt")
    evaluate.main(["--dataset", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                   "-o", str(tmp_path / "before"), *quick, "--classifier", judge])
    before = json.loads((tmp_path / "before" / "metrics_tiles.json").read_text())
    assert "train one with --train_classifier" in next(iter(before["skipped"].values()))
    assert "prior_samples_confident" not in before["models"]["tiles_vae"]
    assert 0 <= before["models"]["tiles_vae"]["knn5_accuracy"] <= 1
    vae = before["models"]["tiles_vae"]
    # from the same draws -ELBO >= IWAE holds exactly; the quadrature of a colour model's likelihood is near them
    assert vae["neg_elbo"] >= vae["iwae_nll_k2"] and abs(vae["nll"] - vae["iwae_nll_k2"]) < 5
    evaluate.main(["--dataset", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                   "-o", str(tmp_path / "after"), *quick, "--classifier", judge, "--train_classifier"])
    after = json.loads((tmp_path / "after" / "metrics_tiles.json").read_text())
    assert "skipped" not in after and 0 <= after["models"]["tiles_vae"]["prior_samples_confident"] <= 1
    assert after["classifier_test_accuracy"] is not None
    evaluate.main(["--dataset", str(tmp_path / "grey"), "--checkpoint_dir", str(tmp_path / "ck"),
                   "-o", str(tmp_path / "grey_out"), *quick])
    grey = json.loads((tmp_path / "grey_out" / "metrics_grey.json").read_text())
    assert "no labels" in " ".join(grey["skipped"].values()) and "knn5_accuracy" not in grey["models"]["grey_vae"]
    assert "Not measured: 5-NN class accuracy" in (tmp_path / "grey_out" / "metrics_grey.md").read_text()


@pytest.mark.slow
def test_the_digits_example_writes_the_same_images_as_an_npz_and_as_a_folder(tmp_path):
    import importlib.util
    from conftest import ROOT
    spec = importlib.util.spec_from_file_location("export_digits", f"{ROOT}/examples/export_digits.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    export.main(["-o", str(tmp_path)])
    from_npz = own_images.read_image_set(str(tmp_path / "digits8x8.npz"))
    from_folder = own_images.read_image_set(str(tmp_path / "digits8x8-png"))
    assert from_npz.images.shape == from_folder.images.shape == (1797, 1, 8, 8)
    assert from_npz.classes == from_folder.classes == [str(d) for d in range(10)]
    order = sorted(range(1797), key=lambda i: (int(from_npz.labels[i]), i))  # the folder is read class by class
    assert torch.equal(from_npz.images[order], from_folder.images)
    assert torch.equal(from_npz.labels[order], from_folder.labels)
    assert from_npz.images.max() == 1.0 and from_npz.images.min() == 0.0  # grey levels 0-16 spread over 0-1


def test_class_names_are_shown_as_written_in_the_legend(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import models
    from lab.figures import latent_dist_figure
    names = ["_hidden?", r"$\frac$", "<img src=x onerror=alert(1)>"]
    model = models.build_model("vae", hidden_dims=[8], image_shape=(1, 8, 6))
    fig = latent_dist_figure(model, torch.rand(30, 1, 8, 6), torch.arange(30) % 3, names, "class")
    fig.canvas.draw()  # mathtext would fail on an unescaped \frac here
    shown = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert shown == ["_hidden?", r"\$\frac\$", "<img src=x onerror=alert(1)>"]  # \$ is how matplotlib prints a $


def test_knn_accuracy_counts_classes_beyond_ten():
    from lab import measures
    train_codes = torch.arange(12.0).repeat_interleave(5)[:, None] * 10
    train_labels = torch.arange(12).repeat_interleave(5)
    assert measures.knn_accuracy(torch.cat([train_codes, torch.zeros(60, 1)], 1), train_labels,
                                 torch.stack([torch.arange(12.0) * 10, torch.zeros(12)], 1), torch.arange(12)) == 1.0


def test_damaged_npz_files_and_sixteen_bit_images(tmp_path):
    np.savez(tmp_path / "whole.npz", images=np.zeros((30, 8, 8), np.uint8))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:300])
    np.save(tmp_path / "one.npy", np.zeros((30, 8, 8), np.uint8))
    (tmp_path / "one.npy").rename(tmp_path / "single.npz")
    for name in ("cut.npz", "single.npz"):
        with pytest.raises(data.DataError, match=f"{name}: cannot be read as an .npz"):
            own_images.read_image_set(str(tmp_path / name))
    folder = tmp_path / "deep"
    folder.mkdir()
    for i, level in enumerate([0, 16384, 65535] * 4):
        Image.fromarray(np.full((6, 6), level, np.uint16)).save(folder / f"{i:02d}.png")
    image_set = own_images.read_image_set(str(folder))
    assert image_set.images.shape == (12, 1, 6, 6)  # grey, not colour
    assert image_set.images[:3, 0, 0, 0].tolist() == pytest.approx([0, 64 / 255, 1], abs=1e-6)


def test_bad_data_leaves_no_folders_and_other_images_of_the_same_shape_are_refused(tmp_path):
    from conftest import run_script, ROOT
    np.savez(tmp_path / "bad.npz", images=np.full((30, 8, 8), 3.0, np.float32))
    result = run_script("train.py", "--train_vae", "--dataset", tmp_path / "bad.npz", "--checkpoint_dir",
                        tmp_path / "ck", "--logdir", tmp_path / "logs", cwd=ROOT)
    assert result.returncode == 2 and "[0, 1]" in result.stderr
    assert not (tmp_path / "ck").exists() and not (tmp_path / "logs").exists()
    import train
    np.savez(tmp_path / "one.npz", images=digits(n=30)[0])
    np.savez(tmp_path / "two.npz", images=digits(n=30, seed=1)[0])
    train.main(["--train_vae", "--epochs", "1", "--hidden_dims", "8", "--dataset", str(tmp_path / "one.npz"),
                "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")])
    result = run_script("explore_latent_space.py", tmp_path / "ck" / "one_vae.pt", "--dataset", tmp_path / "two.npz",
                        "-o", tmp_path / "out", cwd=ROOT)
    assert result.returncode == 2 and "SHA-256" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_study_runs_on_your_own_labelled_images_training_their_judge_first(tmp_path, monkeypatch):
    import json
    import study
    from lab.seed_study import CLAIMS
    images, labels = digits(n=80, colour=True)
    np.savez(tmp_path / "tiles.npz", images=images, labels=labels, classes=np.array(["a", "b", "c"]))
    monkeypatch.chdir(tmp_path)
    study.main(["--quick", "--datasets", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                "-o", str(tmp_path / "out"), "--jobs", "1"])
    # the judge goes to <checkpoint_dir>/judges/, not into ./checkpoints/ of wherever the study was started
    assert (tmp_path / "ck" / "judges" / "tiles_cnn.pt").exists() and not (tmp_path / "checkpoints").exists()
    result = json.loads((tmp_path / "out" / "study.json").read_text())
    assert result["datasets"] == ["tiles"] and {r["dataset"] for r in result["runs"]} == {"tiles"}
    assert len(result["runs"]) == 4 and all(r["samplers"]["prior"]["fid"] >= 0 for r in result["runs"])
    assert {c["claim"] for c in result["comparisons"] if c["primary"]} == {c.text for c in CLAIMS}
    assert (tmp_path / "ck" / "tiles_vae.pt").exists() and (tmp_path / "ck" / "study" / "tiles-seed1").is_dir()
    # a rerun reuses every run: nothing stale, nothing retrained
    before = (tmp_path / "ck" / "tiles_vae.pt").stat().st_mtime_ns
    study.main(["--quick", "--datasets", str(tmp_path / "tiles.npz"), "--checkpoint_dir", str(tmp_path / "ck"),
                "-o", str(tmp_path / "out"), "--jobs", "1"])
    assert (tmp_path / "ck" / "tiles_vae.pt").stat().st_mtime_ns == before


def test_the_study_refuses_unlabelled_images_before_training_anything(tmp_path):
    from conftest import run_script
    write_folder(tmp_path / "flat", digits(n=30)[0])
    result = run_script("study.py", "--quick", "--datasets", tmp_path / "flat", "--checkpoint_dir", tmp_path / "ck",
                        "-o", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "labels" in result.stderr
    assert not (tmp_path / "ck").exists() and not (tmp_path / "out").exists()


def test_a_users_folder_is_read_again_when_a_class_folder_behind_a_link_changes(tmp_path):
    """The cache's signature lists the files the reader reads, a class sub-folder reached through a link too."""
    elsewhere = tmp_path / "elsewhere" / "a"
    elsewhere.mkdir(parents=True)
    folder = tmp_path / "mine"
    (folder / "b").mkdir(parents=True)
    for i in range(10):
        Image.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(elsewhere / f"{i}.png")
        Image.fromarray(np.full((4, 4), 200, np.uint8)).save(folder / "b" / f"{i}.png")
    os.symlink(elsewhere, folder / "a")
    first = data.user_image_set(str(folder))
    assert first.classes == ["a", "b"]
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(elsewhere / "0.png")
    os.utime(elsewhere / "0.png", ns=(0, os.stat(elsewhere / "0.png").st_mtime_ns + 10 ** 9))
    assert data.user_image_set(str(folder)).sha256 != first.sha256
