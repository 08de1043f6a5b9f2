import json
import math
import os

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import data
import evaluate
import models

from lab import cli, judge, measures
from lab.files import UserError
from conftest import DATA_DIR, ROOT, run_script


@pytest.fixture(scope="module")
def small_vae():
    torch.manual_seed(0)
    return models.VAE(hidden_dims=[32]).eval()


def test_iwae_with_one_sample_equals_the_elbo_in_expectation(small_vae):
    images = torch.rand(20, 1, 28, 28)
    iwae_k1 = torch.stack([measures.iwae_nll(small_vae, images, k=1, seed=s).mean() for s in range(300)]).mean()
    torch.manual_seed(1)
    elbo = torch.stack([small_vae.loss(images)["total"].detach() for _ in range(300)]).mean()
    assert iwae_k1.item() == pytest.approx(elbo.item(), rel=2e-3)


def test_iwae_bound_does_not_get_looser_as_k_grows(small_vae):
    images = torch.rand(20, 1, 28, 28)
    # the bound tightens in expectation: average over draws, allow for the remaining noise
    estimates = [sum(measures.iwae_nll(small_vae, images, k=k, chunk=64, seed=s).mean().item() for s in range(5)) / 5
                 for k in (1, 10, 100, 1000)]
    assert all(b <= a + 0.1 for a, b in zip(estimates, estimates[1:])), estimates
    assert estimates[-1] < estimates[0]


def test_bounds_of_a_trained_vae_are_ordered_and_rate_and_distortion_recompute_by_hand(mnist):
    """On the same images: -ELBO >= IWAE-k >= -log p(x) by quadrature (each a tighter bound than the last);
    rate and distortion recomputed from encode_dist and decode with torch.distributions, not the model's loss."""
    vae = models.load_checkpoint(os.path.join(ROOT, "checkpoints", "vae.pt"))
    test = data.Split(mnist["test"].images[:200], mnist["test"].labels[:200])
    terms = measures.evaluate_split(vae, test)
    with torch.no_grad():
        torch.manual_seed(0)  # evaluate_split draws z with seed 0, one batch: the same draw
        mu, logvar = vae.encode_dist(test.images)
        std = logvar.mul(0.5).exp()
        z = mu + std * torch.randn_like(mu)
        distortion = torch.nn.functional.binary_cross_entropy(vae.decode(z), test.images, reduction="sum") / 200
        rate = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(1).mean()
    assert terms["loss_recon"] == pytest.approx(distortion.item(), rel=1e-4)
    assert terms["loss_kl"] == pytest.approx(rate.item(), rel=1e-4)
    neg_elbo = terms["loss_recon"] + terms["loss_kl"]
    iwae = measures.iwae_nll(vae, test.images, k=100).mean().item()
    exact = measures.quadrature_nll(vae, test.images, step=0.05, bound=math.inf).mean().item()
    assert neg_elbo > iwae > exact, (neg_elbo, iwae, exact)
    assert neg_elbo - exact < 10  # and they measure the same thing: a few nats apart, not tens
    # the study's numbers: -ELBO and IWAE from the same draws, so -ELBO >= IWAE image by image (Jensen)
    per_image_elbo, per_image_iwae, ess = measures.elbo_and_iwae(vae, test.images, k=20)
    assert (per_image_elbo >= per_image_iwae).all()
    assert ((ess >= 1 - 1e-4) & (ess <= 20 + 1e-4)).all()
    bounds = measures.likelihood_bounds(vae, test.images, k=20)
    assert bounds["neg_elbo"] == pytest.approx(per_image_elbo.mean().item(), abs=0.5)  # other draws (seed per batch)
    assert bounds["neg_elbo"] > bounds["iwae_nll"] > bounds["nll"]
    assert bounds["neg_elbo"] == pytest.approx(neg_elbo, abs=1.0)  # k draws vs one draw and the exact KL
    # the certified quadrature against one fixed 0.02 grid: the step it chose moves the mean by hundredths at most
    fixed = measures.quadrature_nll(vae, test.images, extent=6.0, bound=math.inf).mean().item()
    assert bounds["nll"] == pytest.approx(fixed, abs=0.02)
    assert 0 <= bounds["quadrature_step_error_nats"] <= measures.QUADRATURE_BOUND
    assert bounds["quadrature_missed_mass_images"] == 0
    assert bounds["iwae_ess"] == pytest.approx(ess.mean().item(), rel=0.2)  # other draws, as above
    assert bounds["iwae_low_ess_share"] == pytest.approx((ess < 2).float().mean().item(), abs=0.1)


def test_effective_sample_size_is_kish_s_of_the_importance_weights(small_vae):
    images = torch.bernoulli(torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    _, _, ess = measures.elbo_and_iwae(small_vae, images, k=30, chunk=7, seed=2)
    # the same draws in one chunk: the weights themselves, and Kish's formula on them
    generator = torch.Generator().manual_seed(2)
    mu, logvar = small_vae.encode_dist(images)
    eps = torch.cat([torch.randn(min(7, 30 - s), *mu.shape, generator=generator) for s in range(0, 30, 7)])
    with torch.no_grad():
        log_w = small_vae.log_importance_weights(images, mu, logvar, eps)[0].double()
    w = torch.exp(log_w - log_w.max(0).values)  # ESS does not change with the weights' scale
    assert torch.allclose(ess.double(), w.sum(0) ** 2 / (w ** 2).sum(0), rtol=1e-4)


def test_quadrature_refines_an_image_whose_posterior_is_narrower_than_its_step():
    """A decoder that turns 0.003 of latent distance into nats (its first layer scaled up) has integrands far
    narrower than the 0.02 step: the fixed step is off by more than the bound, the certified one refines those
    images and agrees with a grid 8 times finer than 0.02, to within the step error it reports."""
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16]).eval()
    with torch.no_grad():
        vae.decoder[0].weight.mul_(200.0)
        images = torch.bernoulli(vae.decode(0.2 * torch.randn(6, 2)))
    extent = 1.2
    fixed = measures.quadrature_nll(vae, images, extent, step=0.02, bound=math.inf)
    finest = measures.quadrature_nll(vae, images, extent, step=0.02 / 8, bound=math.inf)
    certified = measures.certified_quadrature(vae, images, extent, finest_step=0.02 / 8)
    assert (fixed - finest).abs().max() > 10 * measures.QUADRATURE_BOUND  # the case: the fixed step is wrong
    assert (certified.step < 0.02).any() and certified.step.min() >= 0.02 / 8 * (1 - 1e-6)
    settled = certified.step_error <= measures.QUADRATURE_BOUND
    assert settled.all(), certified.step_error
    assert ((certified.nll - finest).abs() <= certified.step_error + 1e-3).all()


def test_each_image_stops_at_the_first_step_that_agrees_with_the_one_before_it():
    """The certified quadrature, image by image, as its docstring defines it: start at the largest step / 2^j not
    above the posterior's smallest sd, halve while the last two steps differ by more than the bound. Found by
    summing every image at every step on fixed grids. (The first version refined an image twice in one pass when
    its level's turn came after it had just been moved there: finer than needed, three times the decoding.)"""
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16], image_shape=(1, 8, 8)).eval()  # small images: the fixed grids are quick
    with torch.no_grad():
        vae.decoder[0].weight.mul_(800.0)
        vae.encoder[-1].weight[2:].mul_(12.0)  # posterior widths that vary around e^-3.5: two starting steps
        vae.encoder[-1].bias[2:].sub_(7.0)
        images = torch.bernoulli(vae.decode(0.3 * torch.randn(32, 2)))
    extent, step, deepest, bound = 0.8, 0.02, 3, measures.QUADRATURE_BOUND
    fixed = torch.stack([measures.quadrature_nll(vae, images, extent, step=step / 2 ** j, bound=math.inf)
                         for j in range(-1, deepest + 1)])  # row j + 1: step / 2^j
    with torch.no_grad():
        narrowest = torch.exp(0.5 * vae.encode_dist(images)[1]).min(1).values
    certified = measures.certified_quadrature(vae, images, extent, step, finest_step=step / 2 ** deepest)
    stops = []
    for i in range(len(images)):
        j = min(deepest, max(0, math.ceil(math.log2(step / narrowest[i].item()))))
        while j < deepest and abs(fixed[j + 1, i] - fixed[j, i]) > bound:
            j += 1
        stops.append(j)
        assert certified.step[i].item() == pytest.approx(step / 2 ** j)
        assert certified.nll[i].item() == pytest.approx(fixed[j + 1, i].item(), abs=1e-4)
        assert certified.step_error[i].item() == pytest.approx(abs(fixed[j + 1, i] - fixed[j, i]).item(), abs=1e-4)
    assert len(set(stops)) >= 3, stops  # the case: images settle at several steps, some after refining
    # each step's tiles decoded once for all the images that need them: no set of latent points decoded twice
    decoded = []
    real = vae.decode_logits
    vae.decode_logits = lambda z: decoded.append((len(z), *z[0].tolist(), *z[-1].tolist())) or real(z)
    measures.certified_quadrature(vae, images, extent, step, finest_step=step / 2 ** deepest)
    vae.decode_logits = real
    assert len(decoded) == len(set(decoded)), "a tile was decoded twice at one step"
    assert measures.certified_quadrature(vae, images[:0], extent).nll.shape == (0,)  # no images: nothing to sum


def test_iwae_is_repeatable_for_a_seed_with_any_chunk_size(small_vae):
    images = torch.rand(5, 1, 28, 28)
    a = measures.iwae_nll(small_vae, images, k=100, chunk=100, seed=3)
    b = measures.iwae_nll(small_vae, images, k=100, chunk=100, seed=3)
    assert torch.equal(a, b)
    assert measures.iwae_nll(small_vae, images, k=100, chunk=7, seed=3).shape == (5,)


def test_iwae_stays_finite_when_a_posterior_is_narrower_than_float32_can_hold():
    # beta = 0 lets posteriors shrink to points: std = exp(-150) underflows to 0, so every z is mu and
    # log q(z|x) = -eps^2/2 + 150 per dimension (2*pi terms aside); with k = 1 the estimate is then
    # recon(mu) + |mu|^2/2 + 300 - |eps|^2/2, and |eps|^2 (chi-squared, 2 d.o.f.) is below 20 but for e^-10
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16]).eval()
    with torch.no_grad():
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([0.5, -1.0, -300.0, -300.0]))  # mu, logvar
    images = torch.rand(8, 1, 28, 28)
    mu = torch.tensor([[0.5, -1.0]]).expand(8, 2)
    point_mass = models.bernoulli_cross_entropy(vae.decode_logits(mu), images) + 0.5 * 1.25 + 300
    estimate = measures.iwae_nll(vae, images, k=1)
    assert torch.isfinite(estimate).all()
    assert (estimate <= point_mass + 1e-3).all() and (estimate > point_mass - 10).all()
    # the training objective shares the estimator: finite too, with finite gradients
    iwae_trained = models.VAE(hidden_dims=[16], iwae_k=5)
    iwae_trained.load_state_dict(vae.state_dict())
    loss = iwae_trained.loss(images)["total"]
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in iwae_trained.parameters())


def test_quadrature_of_a_decoder_that_ignores_its_code_is_its_cross_entropy():
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16]).eval()
    with torch.no_grad():
        vae.decoder[-1].weight.zero_()  # p(x|z) is then the same for every z, so p(x) = p(x|z)
    images = torch.bernoulli(torch.rand(10, 1, 28, 28))
    exact = models.bernoulli_cross_entropy(vae.decode_logits(torch.zeros(10, 2)), images)
    assert torch.allclose(measures.quadrature_nll(vae, images, step=0.05), exact, atol=1e-3)
    with pytest.raises(ValueError, match="2-D"):
        measures.quadrature_nll(models.VAE(hidden_dims=[16], latent_dim=3), images)


def test_quadrature_refines_only_where_it_matters_and_agrees_with_the_fine_grid_everywhere():
    """The tiled sum (coarse everywhere, fine where an image's likelihood lies) against the fine grid summed over
    the whole box, image by image, on the committed VAE, at one step (bound=inf: no refinement)."""
    import data
    vae = models.load_checkpoint(os.path.join(ROOT, "checkpoints", "vae.pt"))
    images = data.load_dataset("mnist", DATA_DIR)["test"].images[:100]
    tiled = measures.quadrature_nll(vae, images, extent=4.0, step=0.05, bound=math.inf)
    everywhere = measures.quadrature_nll(vae, images, extent=4.0, step=0.05, keep_nats=math.inf, bound=math.inf)
    assert (tiled - everywhere).abs().max() < 1e-3
    # the coarse pass in other chunks (5 tiles and 40 images at a time, uneven at the end): the same sums
    chunked = measures.quadrature_nll(vae, images, extent=4.0, step=0.05, image_chunk=40, point_chunk=130,
                                      bound=math.inf)
    assert torch.allclose(chunked, tiled, rtol=0, atol=1e-4)
    assert not torch.equal(tiled, measures.quadrature_nll(vae, images, extent=4.0, step=0.05, keep_nats=0.0,
                                                          bound=math.inf))
    with pytest.raises(ValueError, match="whole number"):
        measures.quadrature_nll(vae, images, step=0.03)


@pytest.mark.slow
def test_the_best_vae_s_certified_quadrature_agrees_with_a_four_times_finer_grid():
    """Image by image, on the images of the best model (checkpoints/binarized-mnist_vae_best.pt) with the
    narrowest posteriors and on the first test images: each image's -log p(x) at the step the quadrature chose
    agrees with a grid 4 times finer, to within the step error the evaluation reports (its largest)."""
    import data
    vae = models.load_checkpoint(os.path.join(ROOT, "checkpoints", "binarized-mnist_vae_best.pt"))
    test = data.load_dataset("binarized-mnist", DATA_DIR)["test"].images
    with torch.no_grad():
        narrowest = vae.encode_dist(test)[1].min(1).values.argsort()[:2]
    images = torch.cat([test[narrowest], test[:10]])
    extent = measures.quadrature_extent(vae, images)
    certified = measures.certified_quadrature(vae, images, extent)
    reported = certified.step_error.max().item()
    assert reported <= measures.QUADRATURE_BOUND
    assert certified.step[:2].max() < measures.QUADRATURE_STEP  # the narrow ones needed a finer step
    for step in certified.step.unique().tolist():
        rows = (certified.step == step).nonzero().flatten()
        finer = measures.quadrature_nll(vae, images[rows], extent, step=float(f"{step:.6g}") / 4, bound=math.inf)
        assert (certified.nll[rows] - finer).abs().max().item() <= reported, step


@pytest.mark.slow
def test_quadrature_converges_and_lies_under_the_iwae_bound_of_the_committed_vae():
    import data
    vae = models.load_checkpoint(os.path.join(ROOT, "checkpoints", "binarized-mnist_vae.pt"))
    images = data.load_dataset("binarized-mnist", DATA_DIR)["test"].images[:100]
    fine = measures.quadrature_nll(vae, images, step=0.02).mean().item()
    coarse = measures.quadrature_nll(vae, images, step=0.025).mean().item()
    iwae = measures.iwae_nll(vae, images, k=1000).mean().item()
    assert abs(fine - coarse) < 0.02
    # the IWAE estimate is an upper bound on -log p(x) (in expectation), close to it at k = 1000
    assert fine < iwae < fine + 1.0, (fine, iwae)


def test_knn_is_perfect_on_separated_codes_and_near_chance_on_shuffled_labels():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2000) % 10
    centres = torch.randn(10, 2, generator=generator) * 100
    codes = centres[labels] + torch.randn(2000, 2, generator=generator)
    assert measures.knn_accuracy(codes[:1500], labels[:1500], codes[1500:], labels[1500:]) == 1.0
    shuffled = labels[torch.randperm(2000, generator=generator)]
    assert abs(measures.knn_accuracy(codes[:1500], shuffled[:1500], codes[1500:], shuffled[1500:]) - 0.1) < 0.05


def test_mmd_is_near_zero_for_the_prior_itself_and_large_for_a_shifted_cloud():
    generator = torch.Generator().manual_seed(0)
    same = measures.gaussian_mmd2(torch.randn(1000, 2, generator=generator), torch.randn(1000, 2, generator=generator))
    shifted = measures.gaussian_mmd2(torch.randn(1000, 2, generator=generator) * 5 + 3, torch.randn(1000, 2, generator=generator))
    assert abs(same) < 0.01 and shifted > 0.3
    assert measures.prior_match(torch.randn(5000, 2, generator=generator))["code_cov_distance_to_identity"] < 0.1


def test_ink_scores_and_all_black_baseline():
    images = torch.zeros(2, 1, 28, 28)
    images[:, :, 10:14, 10:14] = 1.0  # 16 ink pixels per image
    assert measures.reconstruction_metrics(images, images)["ink_f1"] == 1.0
    baseline = measures.all_black_baseline(images)
    assert baseline["ink_f1"] == 0.0 and baseline["ink_iou"] == 0.0
    assert baseline["pixel_acc_0.5"] == pytest.approx(1 - 16 / 784)


def test_judge_entropy_and_confidence():
    probabilities = torch.softmax(torch.nn.functional.one_hot(torch.arange(1000) % 10, 10).float() * 20, 1)
    verdict = judge.verdicts(probabilities)
    assert verdict["confident"] == 1.0 and verdict["class_entropy_bits"] == pytest.approx(math.log2(10))
    assert judge.verdicts(probabilities[::10])["class_entropy_bits"] == 0.0  # every one judged a 0


def test_one_pass_of_the_judge_gives_its_class_probabilities_and_its_last_hidden_layer():
    torch.manual_seed(0)
    classifier = judge.DigitClassifier().eval()
    images = torch.rand(1500, 1, 28, 28)
    probabilities, features = judge.judge_outputs(classifier, images)
    with torch.no_grad():
        assert torch.allclose(probabilities, torch.softmax(classifier(images), 1), atol=1e-6)
        hidden = torch.relu(classifier.head[1](classifier.features(images).flatten(1)))
    assert features.shape == (1500, 128) and torch.allclose(features, hidden, atol=1e-5)


@pytest.mark.slow
def test_committed_classifier_reaches_its_accuracy_bar(mnist):
    classifier = judge.load_judge(os.path.join(ROOT, judge.JUDGE_PATH.format(dataset="mnist")))
    assert judge.accuracy(classifier, mnist["test"]) >= judge.ACCURACY_BAR


@pytest.mark.slow
def test_classifier_training_learns_from_a_subset(mnist):
    from data import Split
    subset = {"train": Split(mnist["train"].images[:3000], mnist["train"].labels[:3000]),
              "val": Split(mnist["val"].images[:1000], mnist["val"].labels[:1000])}
    classifier = judge.train_judge(subset, epochs=3).eval()
    assert judge.accuracy(classifier, subset["val"]) > 0.9


@pytest.mark.slow
def test_evaluate_writes_json_and_markdown_for_every_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.manual_seed(0)
    models.save_checkpoint(ck / "autoencoder.pt", models.AutoEncoder(hidden_dims=[16]))
    models.save_checkpoint(ck / "vae.pt", models.VAE(hidden_dims=[16]))
    models.save_checkpoint(ck / "vae_iwae.pt", models.VAE(hidden_dims=[16], iwae_k=3))
    # two seeds of one recipe (and the plain VAE above, saved without a training config: not of it)
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.save_checkpoint(ck / f"vae_seed{seed}.pt", models.VAE(hidden_dims=[16]),
                               config={"seed": seed, "epochs": 3, "hidden_dims": [16], "training_version": 1})
    evaluate.main(["--checkpoint_dir", str(ck), "-o", str(tmp_path / "out"), "--data_dir", DATA_DIR,
                   "--classifier", os.path.join(ROOT, judge.JUDGE_PATH.format(dataset="mnist")),
                   "--iwae_k", "4", "--iwae_images", "50", "--num_samples", "200"])
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["models"]) == {"auto", "vae", "vae_iwae", "vae_seed1", "vae_seed2"}
    (summary,) = report["across_seeds"]
    assert summary["runs"] == ["vae_seed1", "vae_seed2"] and summary["seeds"] == [1, 2]
    pair = [report["models"][n]["iwae_nll_k4"] for n in summary["runs"]]
    assert summary["measures"]["iwae_nll_k4"]["mean"] == pytest.approx(sum(pair) / 2)
    assert summary["measures"]["iwae_nll_k4"]["values"] == pair
    # every VAE, whatever it was trained on, has its -ELBO and IWAE bound from the same draws on the same images
    for name in ("vae", "vae_iwae"):
        scores = report["models"][name]
        assert scores["neg_elbo"] >= scores["iwae_nll_k4"] and scores["bound_images"] == 50
    plain = report["models"]["vae"]  # beta = 1: its objective is its one-draw -ELBO, recon + KL
    assert plain["objective"] == pytest.approx(plain["recon_sampled_z"] + plain["rate"], rel=1e-5)
    assert report["models"]["auto"]["objective"] == pytest.approx(report["models"]["auto"]["recon"], rel=1e-5)
    assert "neg_elbo" not in report["models"]["auto"] and "fitted_gaussian_samples_confident" in report["models"]["auto"]
    assert report["all_black_baseline"]["pixel_acc_0.6"] == pytest.approx(0.877, abs=0.002)
    assert report["provenance"]["command"].startswith("python evaluate.py")
    assert "| IWAE estimate" in (tmp_path / "out" / "metrics.md").read_text()
    assert "| vae_seed1 / vae_seed2: one recipe, seeds 1, 2 | mean |" in (tmp_path / "out" / "metrics.md").read_text()


@pytest.mark.slow
def test_binarized_mnist_is_evaluated_on_its_binary_test_set_by_the_mnist_judge(tmp_path, monkeypatch, mnist,
                                                                                binarized_mnist):
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16])
    models.save_checkpoint(ck / "binarized-mnist_vae.pt", vae, dataset="binarized-mnist")
    models.save_checkpoint(ck / "vae.pt", vae)  # an MNIST checkpoint beside it: not picked up
    monkeypatch.chdir(ROOT)  # the default judge path is relative to the project
    evaluate.main(["--checkpoint_dir", str(ck), "--dataset", "binarized-mnist", "-o", str(tmp_path / "out"),
                   "--data_dir", DATA_DIR, "--iwae_k", "2", "--iwae_images", "20", "--num_samples", "100"])
    report = json.loads((tmp_path / "out" / "metrics_binarized-mnist.json").read_text())
    assert list(report["models"]) == ["binarized-mnist_vae"]
    binary_test, grey_test = binarized_mnist["test"], mnist["test"]
    on_binary = measures.evaluate_split(vae, binary_test)["loss_total"]
    assert report["models"]["binarized-mnist_vae"]["objective"] == pytest.approx(on_binary, rel=1e-6)
    # (the cross-entropy is linear in the target, so on average it cannot tell the two test sets apart;
    # the all-black baseline, a fraction of thresholded pixels, can)
    baseline = report["all_black_baseline"]["pixel_acc_0.5"]
    assert baseline == pytest.approx(measures.all_black_baseline(binary_test.images)["pixel_acc_0.5"], abs=1e-6)
    assert abs(baseline - measures.all_black_baseline(grey_test.images)["pixel_acc_0.5"]) > 1e-3
    assert report["classifier_test_accuracy"] > 0.95  # the MNIST judge, scored on the binary test digits


@pytest.mark.slow
def test_evaluate_on_the_validation_split_writes_its_own_report(tmp_path, monkeypatch, mnist):
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16])
    models.save_checkpoint(tmp_path / "vae.pt", vae)
    monkeypatch.chdir(ROOT)
    evaluate.main([str(tmp_path / "vae.pt"), "--split", "val", "--quadrature", "-o", str(tmp_path / "out"), "--data_dir", DATA_DIR,
                   "--iwae_k", "2", "--iwae_images", "20", "--num_samples", "100"])
    result = json.loads((tmp_path / "out" / "metrics_val.json").read_text())["models"]["vae"]
    assert result["objective"] == pytest.approx(measures.evaluate_split(vae, mnist["val"])["loss_total"], rel=1e-6)
    images = mnist["val"].images[:20]
    exact = measures.quadrature_nll(vae, images, measures.quadrature_extent(vae, images)).mean().item()
    assert result["nll"] == pytest.approx(exact, rel=1e-6) and result["bound_images"] == 20
    assert "\n| validation set |" in (tmp_path / "out" / "metrics_val.md").read_text()
    assert not (tmp_path / "out" / "metrics.json").exists()
    # --report_name: the same report under the name given
    evaluate.main([str(tmp_path / "vae.pt"), "--split", "val", "-o", str(tmp_path / "out"), "--data_dir", DATA_DIR,
                   "--iwae_k", "2", "--iwae_images", "20", "--num_samples", "100", "--report_name", "protocol"])
    named = json.loads((tmp_path / "out" / "protocol.json").read_text())["models"]["vae"]
    assert named["objective"] == result["objective"] and (tmp_path / "out" / "protocol.md").exists()
    # two checkpoints with one file name in two folders (the study's seeds): one column each, none overwritten
    other = models.VAE(hidden_dims=[16])
    (tmp_path / "seed1").mkdir()
    models.save_checkpoint(tmp_path / "seed1" / "vae.pt", other)
    evaluate.main([str(tmp_path / "vae.pt"), str(tmp_path / "seed1" / "vae.pt"), "--split", "val", "-o", str(tmp_path / "out"),
                   "--data_dir", DATA_DIR, "--iwae_k", "2", "--iwae_images", "20", "--num_samples", "100",
                   "--report_name", "two"])
    both = json.loads((tmp_path / "out" / "two.json").read_text())["models"]
    assert set(both) == {f"{tmp_path.name}_vae", "seed1_vae"}
    assert both[f"{tmp_path.name}_vae"]["objective"] == result["objective"]
    assert both["seed1_vae"]["objective"] == pytest.approx(measures.evaluate_split(other, mnist["val"])["loss_total"], rel=1e-6)


def test_output_names_keep_checkpoints_of_one_file_name_apart():
    names = cli.output_names(["checkpoints/vae.pt", "checkpoints/study/mnist-seed1/vae.pt",
                              "checkpoints/study/binarized-mnist-seed1/binarized-mnist_vae.pt", "runs/best.pt"],
                             lambda path: "binarized-mnist" if "binarized" in path else "mnist")
    assert names == {"checkpoints/vae.pt": "checkpoints_vae", "checkpoints/study/mnist-seed1/vae.pt": "mnist-seed1_vae",
                     "checkpoints/study/binarized-mnist-seed1/binarized-mnist_vae.pt": "binarized-mnist_vae",
                     "runs/best.pt": "best"}
    with pytest.raises(UserError, match="share one name"):
        cli.output_names(["a/x/vae.pt", "b/x/vae.pt"], lambda path: "mnist")


def test_evaluate_rejects_a_classifier_as_a_model_to_evaluate(tmp_path):
    result = run_script("evaluate.py", os.path.join(ROOT, judge.JUDGE_PATH.format(dataset="mnist")), "-o", tmp_path,
                        cwd=ROOT)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "classifier" in result.stderr


@pytest.mark.slow
def test_evaluation_metrics_reach_the_training_runs_tensorboard_hparams(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    import train
    train.main(["--train_vae", "--epochs", "1", "--hidden_dims", "16", "--max_train_images", "1000",
                "--data_dir", DATA_DIR, "--checkpoint_dir", str(tmp_path / "ck"), "--logdir", str(tmp_path / "logs")])
    evaluate.main([str(tmp_path / "ck" / "vae.pt"), "-o", str(tmp_path / "out"), "--data_dir", DATA_DIR,
                   "--classifier", os.path.join(ROOT, judge.JUDGE_PATH.format(dataset="mnist")),
                   "--iwae_k", "2", "--iwae_images", "20", "--num_samples", "100"])
    (run_dir,) = (tmp_path / "logs").iterdir()
    scalars = EventAccumulator(str(run_dir)).Reload().Tags()["scalars"]
    assert "eval/iwae_nll_k2" in scalars and "eval/prior_samples_confident" in scalars


def test_quadrature_refuses_posteriors_beyond_its_box_and_widens_it_for_those_within_reach():
    torch.manual_seed(0)
    vae = models.VAE(hidden_dims=[16]).eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        vae.encoder[-1].weight.zero_()
        vae.encoder[-1].bias.copy_(torch.tensor([0.5, -1.0, 0.0, 0.0]))  # mu, logvar: sd 1
        assert measures.quadrature_extent(vae, images) == 6.0  # 1 + 4 sd: the prior's box suffices
        vae.encoder[-1].bias.copy_(torch.tensor([7.5, -1.0, -8.0, -8.0]))  # mu 7.5, sd 0.02
        assert measures.quadrature_extent(vae, images) == 8.0
        vae.encoder[-1].bias.copy_(torch.tensor([28.7, -1.0, -8.0, -8.0]))  # as far as a best-recipe VAE's outlier
        assert measures.quadrature_extent(vae, images) == 29.0
        vae.encoder[-1].bias.copy_(torch.tensor([50.0, -1.0, -8.0, -8.0]))  # a beta = 0 VAE's far codes
        with pytest.raises(measures.OutOfReach, match="beyond the quadrature's box"):
            measures.quadrature_extent(vae, images)


def test_a_recipes_seed_table_draws_each_interval_inside_what_its_measure_can_be():
    from lab import reports
    from lab.seed_statistics import over_seeds
    summary = {"runs": ["a", "a_seed1"], "seeds": [0, 1],
               "measures": {"knn5_accuracy": over_seeds([0.87, 0.83]), "quadrature_refined_images": over_seeds([612, 519]),
                            "nll": over_seeds([127.56, 128.13])}}
    rows = {line.split(" | ")[0]: line for line in reports.seed_summary_table(summary, 500).splitlines()}
    raw = summary["measures"]
    assert raw["knn5_accuracy"]["ci95"][1] > 1 and raw["quadrature_refined_images"]["ci95"][0] < 0  # the t interval
    assert "| 85.00% | [" in rows["| 5-NN class accuracy from the codes"]
    assert rows["| 5-NN class accuracy from the codes"].endswith(", 100.00%] | 87.00%, 83.00% |")
    assert "| [0, " in rows["| images summed on a grid finer than 0.02"]
    low, high = raw["nll"]["ci95"]  # nats: as computed
    assert f"[{low:.2f}, {high:.2f}]" in rows["| −log p(x) by quadrature over the latent plane, nats"]
