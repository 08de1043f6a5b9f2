import json
import re
import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch

import models
import study

from lab import beta_sweep, measures, reports, sample_measures, samplers, seed_statistics, seed_study
from conftest import DATA_DIR, lock_held_elsewhere, run_script


def gaussian_sample(n, mean, covariance, seed):
    generator = torch.Generator().manual_seed(seed)
    cholesky = torch.linalg.cholesky(torch.as_tensor(covariance, dtype=torch.float64))
    return torch.as_tensor(mean, dtype=torch.float64) + torch.randn(n, len(mean), generator=generator, dtype=torch.float64) @ cholesky.T


def frechet_by_hand(a, b):
    """The textbook formula with scipy's matrix square root, on the sample means and covariances."""
    a, b = a.numpy(), b.numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real))


def test_frechet_distance_of_a_sample_with_itself_is_zero_and_grows_with_a_shift():
    x = gaussian_sample(2000, [0.0] * 4, np.eye(4), seed=0)
    assert sample_measures.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    distances = [sample_measures.frechet_distance(x, x + shift) for shift in (0.5, 1.0, 2.0)]
    # a shift of every coordinate by s moves only the mean term: 4 s^2
    assert distances == pytest.approx([4 * 0.25, 4 * 1.0, 4 * 4.0], rel=1e-6)


def test_frechet_distance_matches_the_formula_on_gaussians_with_known_covariances():
    cov_a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    cov_b = np.diag([1.0, 3.0, 0.2])
    a = gaussian_sample(20000, [0.0, 1.0, 0.0], cov_a, seed=1)
    b = gaussian_sample(20000, [1.0, 0.0, 0.5], cov_b, seed=2)
    assert sample_measures.frechet_distance(a, b) == pytest.approx(frechet_by_hand(a, b), rel=1e-6)
    # and it estimates the distance between the true distributions
    true_value = 1 + 1 + 0.25 + np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real)
    assert sample_measures.frechet_distance(a, b) == pytest.approx(true_value, abs=0.05)


def density_coverage(real, fake, k=5):
    return sample_measures.density_coverage(real, fake, sample_measures.kth_neighbour_radius(real, k), k)


def test_density_coverage_and_precision_by_hand_on_points_on_a_line():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every real ball has radius 1
    fake = torch.tensor([[0.5], [0.9], [10.0]])  # 0.5 lies in 2 balls (0, 1), 0.9 in 2 (0, 1), 10 in none
    result = density_coverage(real, fake, k=1)
    assert result["density"] == pytest.approx(4 / 3) and result["coverage"] == 0.5
    assert result["precision"] == pytest.approx(2 / 3)


def test_density_and_coverage_are_about_one_for_the_same_distribution_and_zero_far_away():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(2000, 8, generator=generator)
    same = density_coverage(real, torch.randn(2000, 8, generator=generator))
    assert 0.8 < same["density"] < 1.2 and same["coverage"] > 0.9  # Naeem et al. 2020: E[density] = 1
    far = density_coverage(real, torch.randn(2000, 8, generator=generator) + 100.0)
    assert far == {"density": 0.0, "coverage": 0.0, "precision": 0.0}


def test_coverage_tells_mode_dropping_where_precision_does_not():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0]])
    real = centres[torch.arange(1000) % 2] + torch.randn(1000, 2, generator=generator)
    one_mode = centres[0] + torch.randn(1000, 2, generator=generator)  # good samples, half the data missed
    result = density_coverage(real, one_mode)
    assert result["precision"] > 0.9 and 0.4 < result["coverage"] < 0.55
    collapsed = density_coverage(real, centres[0] + 0.01 * torch.randn(1000, 2, generator=generator))
    assert collapsed["density"] > 1.2 and collapsed["coverage"] < 0.05  # all on one point: dense, covering nothing


def test_fitted_samplers_reproduce_the_codes_distribution():
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(5000, 2, generator=generator) @ torch.tensor([[3.0, 0.0], [1.0, 0.5]]) + torch.tensor([5.0, -2.0])
    drawn = samplers.fitted_gaussian_sampler(codes, seed=0)(20000)
    assert torch.allclose(drawn.mean(0), codes.mean(0), atol=0.1)
    assert torch.allclose(torch.cov(drawn.T), torch.cov(codes.T), rtol=0.05, atol=0.05)
    clusters = torch.tensor([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[torch.arange(3000) % 3] + 0.1 * torch.randn(3000, 2, generator=generator)
    mixture = samplers.fitted_mixture_sampler(clusters, components=3, seed=0)
    sample = mixture(3000)
    nearest = torch.cdist(sample, torch.tensor([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]])).min(1).values
    assert (nearest < 1.0).float().mean() > 0.99  # a mixture lands on the clusters, not between them
    assert torch.equal(sample, mixture(3000))  # a fixed seed: the same draws every time


def test_intervals_tests_and_holm_on_hand_made_numbers():
    from scipy import stats
    mean, (low, high) = seed_statistics.mean_ci95([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 degrees of freedom) * sd 1 / sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert math.isnan(seed_statistics.mean_ci95([5.0])[1][0])
    assert seed_statistics.t_test_p([1.0, 2.0, 3.0]) == pytest.approx(stats.ttest_1samp([1, 2, 3], 0).pvalue)
    # Holm: sorted p 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (kept monotone), back in the given order
    assert seed_statistics.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert seed_statistics.holm([0.9, 0.5]) == pytest.approx([1.0, 1.0])  # 2 x 0.5 = 1, and never below it


def test_equivalence_needs_the_90_percent_interval_inside_the_margin():
    tight = [0.1, -0.2, 0.15, 0.0, -0.05]
    low, high = seed_statistics.mean_ci95(tight, level=0.90)[1]
    assert -1 < low and high < 1 and seed_statistics.tost_p(tight, margin=1.0) < 0.05
    assert seed_statistics.tost_p(tight, margin=max(abs(low), abs(high)) - 0.01) > 0.05  # the edge, exactly
    wide = [-40.0, 60.0, 10.0, -30.0, 50.0]  # mean 10, but the interval is far wider than the margin
    assert seed_statistics.tost_p(wide, margin=25.0) > 0.05
    assert seed_statistics.verdict(10.0, 0.01, 0, margin=25.0) == "equivalent"
    assert seed_statistics.verdict(10.0, 0.2, 0, margin=25.0) == "not shown"
    assert seed_statistics.verdict(-3.0, 0.01, -1) == "holds" and seed_statistics.verdict(3.0, 0.01, -1) == "reversed"


def test_every_summary_over_seeds_is_the_t_interval_drawn_inside_a_share_s_range_for_display_only():
    from scipy import stats
    shares = [0.0, 0.01, 0.0]  # a t interval of these reaches below 0
    summary = seed_statistics.over_seeds(shares)
    low, high = stats.t.interval(0.95, 2, loc=sum(shares) / 3, scale=stats.sem(shares))
    assert summary["n"] == 3 and summary["values"] == shares
    assert summary["ci95"] == pytest.approx([low, high]) and low < 0  # stored: the t interval itself
    assert reports.interval(summary["ci95"], "confident") == f"[0.000, {high:.3f}]"  # printed inside [0, 1]
    assert reports.interval(summary["ci95"], "confident", difference=True) == f"[{low:.3f}, {high:.3f}]"
    assert reports.interval(summary["ci95"], "fid") == f"[{low:.2f}, {high:.2f}]"  # no range to keep
    # the study and the sweep summarise with that one function
    runs = [{"dataset": "mnist", "model": "vae", "seed": s, "metrics": {"confident": v}, "samplers": {}}
            for s, v in enumerate(shares)]
    assert seed_study.summarise(runs)[0]["ci95"] == summary["ci95"]
    sweep_runs = [{"beta": 1.0, "seed": s, "confident": v} for s, v in enumerate(shares)]
    assert beta_sweep.summarise_sweep(sweep_runs)[0]["ci95"] == summary["ci95"]


def test_the_verdicts_are_decided_in_seed_statistics_not_equivalent_included():
    # the 90 % interval wholly beyond the margin: not equivalent; straddling it: not shown
    assert seed_statistics.verdict(40.0, 0.9, 0, margin=25.0, ci90=(30.0, 50.0)) == "not equivalent"
    assert seed_statistics.verdict(-40.0, 0.9, 0, margin=25.0, ci90=(-50.0, -26.0)) == "not equivalent"
    assert seed_statistics.verdict(20.0, 0.9, 0, margin=25.0, ci90=(10.0, 30.0)) == "not shown"
    assert seed_statistics.verdict(20.0, 0.9, 0, margin=25.0) == "not shown"


def test_the_paired_minimum_detectable_difference_has_power_0_8_by_statsmodels_and_by_simulation():
    statsmodels_power = pytest.importorskip("statsmodels.stats.power")
    differences = [1.0, -0.5, 2.0, 0.3, 1.1]
    mde = seed_statistics.paired_minimum_detectable_difference(differences, alpha=0.01)
    sd = stats_sd(differences)
    assert statsmodels_power.TTestPower().power(mde / sd, nobs=5, alpha=0.01) == pytest.approx(0.8, abs=1e-3)
    rng = torch.Generator().manual_seed(0)
    samples = mde + sd * torch.randn(20000, 5, generator=rng, dtype=torch.float64)
    from scipy import stats
    p = stats.ttest_1samp(samples.numpy(), 0.0, axis=1).pvalue
    assert (p < 0.01).mean() == pytest.approx(0.8, abs=0.015)
    assert seed_statistics.paired_minimum_detectable_difference([1.0], alpha=0.05) != \
        seed_statistics.paired_minimum_detectable_difference([1.0], alpha=0.05)  # nan: one seed


def stats_sd(values):
    mean = sum(values) / len(values)
    return (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def test_a_recipes_runs_are_summarised_over_seeds_on_the_numbers_they_all_have():
    from scipy import stats
    results = {"best": {"nll": 124.0, "iwae_nll_k1000": 125.0, "rate": 6.0, "nll_skipped": "reason"},
               "best_seed1": {"nll": 125.0, "iwae_nll_k1000": 126.5, "rate": float("nan")},
               "best_seed2": {"nll": 126.0, "iwae_nll_k1000": 127.0, "rate": 6.2}}
    summary = seed_statistics.across_seeds(results, {"best": 0, "best_seed1": 1, "best_seed2": 2})
    assert summary["runs"] == ["best", "best_seed1", "best_seed2"] and summary["seeds"] == [0, 1, 2]
    assert set(summary["measures"]) == {"nll", "iwae_nll_k1000"}  # rate: not finite in one run; a string is no number
    nll = summary["measures"]["nll"]
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of 124, 125, 126 is 1
    assert nll["mean"] == 125.0 and nll["ci95"] == pytest.approx([125 - half, 125 + half])
    assert nll["values"] == [124.0, 125.0, 126.0]


def test_paired_comparison_reads_each_claim_off_its_primary_measure_with_holm():
    def run(model, seed, mmd, fid):
        return {"dataset": "mnist", "model": model, "seed": seed, "metrics": {"mmd2_to_prior": mmd},
                "samplers": {"prior": {"fid": fid, "density": 0.5}, "gmm": {"fid": fid}}}
    runs = [run("autoencoder", s, 0.3 + 0.01 * s, 300.0 + s) for s in range(5)] + \
        [run("vae", s, 0.01 + 0.001 * s, 200.0 - s) for s in range(5)]
    rows = {(c["metric"], c["sampler"]): c for c in seed_study.compare(runs)}
    mmd = rows["mmd2_to_prior", None]
    assert mmd["claim"] == "the VAE's codes are closer to N(0, I)" and mmd["primary"] and mmd["n"] == 5
    assert mmd["mean"] == pytest.approx(sum(0.01 + 0.001 * s - 0.3 - 0.01 * s for s in range(5)) / 5)
    assert mmd["verdict"] == "holds" and mmd["p_holm"] >= mmd["p"]
    assert rows["fid", "prior"]["verdict"] == "holds"
    assert rows["density", "prior"]["primary"] is False and rows["density", "prior"]["verdict"] is None
    gmm = rows["fid", "gmm"]  # the VAE 100 better with the mixture too: not equivalent within 25
    assert gmm["margin"] == 25.0 and gmm["ci90"][1] < -25.0 and len(gmm["differences"]) == 5
    assert gmm["verdict"] == "not equivalent"  # decided in seed_statistics, stored in the comparison
    primaries = [c for c in rows.values() if c["primary"]]
    assert [c["p_holm"] for c in primaries] == pytest.approx(seed_statistics.holm([c["p"] for c in primaries]))
    # each tested comparison stores what its seeds could detect: the paired test's mde80 at Holm's strictest
    # level, alpha over the number of the dataset's tested claims
    tested = [c for c in primaries if c.get("margin") is None]
    assert [c["mde80"] for c in tested] == pytest.approx(
        [seed_statistics.paired_minimum_detectable_difference(c["differences"], 0.05 / len(primaries))
         for c in tested])
    assert len(tested) == 2 and all(0 < c["mde80"] < math.inf for c in tested) and gmm["mde80"] is None
    assert rows["density", "prior"]["mde80"] is None


@pytest.mark.slow
def test_quick_study_runs_end_to_end_then_reuses_every_run(tmp_path, capsys):
    checkpoints, out = tmp_path / "checkpoints", tmp_path / "out"
    argv = ["--quick", "--datasets", "mnist", "--checkpoint_dir", str(checkpoints), "-o", str(out), "--data_dir", DATA_DIR]
    study.main(argv)
    result = json.loads((out / "study.json").read_text())
    assert {(r["model"], r["seed"]) for r in result["runs"]} == {("autoencoder", 0), ("autoencoder", 1), ("vae", 0), ("vae", 1)}
    for r in result["runs"]:
        assert r["dataset"] == "mnist" and os.path.exists(r["checkpoint"])
        assert set(r["samplers"]) == {"prior", "gaussian", "gmm"}
        for scores in r["samplers"].values():
            assert {"fid", "density", "coverage", "precision", "confident", "class_entropy_bits"} <= set(scores)
            assert scores["fid"] > 0 and 0 <= scores["coverage"] <= 1 and scores["density"] >= 0
        assert {"objective", "recon", "mmd2_to_prior"} <= set(r["metrics"]) and r["train_seconds"] > 0
    vae = next(r for r in result["runs"] if r["model"] == "vae")["metrics"]
    assert vae["neg_elbo"] >= vae["iwae_nll_k10"] and vae["bound_images"] == 100 and "nll" in vae
    # seed 0 in the checkpoint folder itself, other seeds in study/<dataset>-seed<S>/
    assert (checkpoints / "autoencoder.pt").exists() and (checkpoints / "study" / "mnist-seed1" / "vae.pt").exists()
    entry = next(s for s in result["summary"] if s["model"] == "vae" and s["sampler"] == "prior" and s["metric"] == "fid")
    assert entry["n"] == 2 and entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1] and len(entry["values"]) == 2
    assert {c["claim"] for c in result["comparisons"]} == {c.text for c in seed_study.CLAIMS}
    primaries = [c for c in result["comparisons"] if c["primary"]]
    assert len(primaries) == len(seed_study.CLAIMS) and all(c["p_holm"] is not None for c in primaries)
    assert all(c["verdict"] in ("holds", "reversed", "equivalent", "not shown") for c in primaries)
    assert all(c["verdict"] is None for c in result["comparisons"] if not c["primary"])
    assert result["floors"]["mnist"]["fid"] >= 0
    provenance = result["provenance"]
    assert provenance["jobs"] == 2 and provenance["command"].startswith("python study.py --quick")
    assert 0 < provenance["wall_seconds"] and provenance["torch"] == torch.__version__
    assert (out / "study.md").read_text().count("| MNIST |") == len(result["comparisons"]) + 7  # + the samplers
    assert (out / "study_samplers.png").stat().st_size > 10000

    # a second call trains and evaluates nothing again: every checkpoint and result is reused
    mtimes = {p: p.stat().st_mtime_ns for p in checkpoints.rglob("*.pt")}
    study.main(argv)
    again = json.loads((out / "study.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in checkpoints.rglob("*.pt")} == mtimes
    assert [r["samplers"] for r in again["runs"]] == [r["samplers"] for r in result["runs"]]
    assert again["provenance"]["wall_seconds"] == provenance["wall_seconds"]  # the work's time, not the rerun's


def test_a_run_of_another_configuration_is_not_reused(tmp_path):
    import train
    from lab import config, runner
    args = study.parse_args(["--quick", "--checkpoint_dir", str(tmp_path / "c"), "-o", str(tmp_path / "o")])
    settings = study.study_config(args, "cpu", "python study.py --quick")
    run = runner.RunConfig("mnist", "vae", 0)
    folder, path = runner.run_checkpoint(run, settings)
    wanted = runner.train_config_of(run, settings)
    assert runner.checkpoint_state(path, wanted) == "missing"
    train.main(["--train_vae", "--beta", "1", "--epochs", "1", "--max_train_images", "500", "--checkpoint_dir", folder,
                "--logdir", str(tmp_path / "logs"), "--data_dir", DATA_DIR])
    assert runner.checkpoint_state(path, wanted) == "missing"  # 500 training images, not 1000
    assert runner.checkpoint_state(path, config.replace(wanted, max_train_images=500)) == "finished"
    # the model kind is part of a run's identity too: a VAE's file is not an AutoEncoder's run
    assert runner.checkpoint_state(path, config.replace(wanted, max_train_images=500, kind="autoencoder",
                                                        beta=None)) == "missing"
    # and every recipe field: each changed alone makes the run another one
    for name, other in (("epochs", 2), ("lr", 1e-3), ("hidden_dims", (64,)), ("activation", "relu"),
                        ("max_grad_norm", 0.0), ("precision", "bf16"), ("compile", True), ("seed", 3),
                        ("training_version", config.TRAINING_VERSION + 1), ("beta", 2.0), ("iwae_k", 5)):
        assert runner.checkpoint_state(path, config.replace(wanted, max_train_images=500, **{name: other})) == \
            "missing", name


def test_quick_mode_refuses_the_real_folders(capsys):
    with pytest.raises(SystemExit) as stop:
        study.parse_args(["--quick"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: --quick needs its own --checkpoint_dir")


def test_active_dimensions_count_the_codes_that_vary_over_the_data():
    generator = torch.Generator().manual_seed(0)
    spreads = torch.tensor([1.0, 0.3, 0.05, 0.001])  # variances 1, 0.09, 0.0025, 1e-6
    means = torch.randn(5000, 4, generator=generator) * spreads + torch.tensor([3.0, -1.0, 0.0, 7.0])
    assert measures.active_dimensions(means) == 2
    assert measures.active_dimensions(means, threshold=0.001) == 3


@pytest.mark.slow
def test_rate_falls_as_beta_rises(tmp_path):
    import data
    import train
    train.main(["--train_vae", "--beta", "0.1", "1", "8", "--hidden_dims", "64", "--epochs", "2",
                "--max_train_images", "3000", "--checkpoint_dir", str(tmp_path), "--logdir", str(tmp_path / "logs"),
                "--data_dir", DATA_DIR])
    val = data.load_dataset("mnist", DATA_DIR, max_train_images=10)["val"]
    rates = [measures.evaluate_split(models.load_checkpoint(tmp_path / f"{name}.pt"), val)["loss_kl"]
             for name in ("vae_beta0.1", "vae", "vae_beta8")]
    assert rates[0] > rates[1] > rates[2], rates


@pytest.mark.slow
def test_quick_beta_sweep_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    study.main(["--quick", "--beta_sweep", "--betas", "0", "4", "--jobs", "1", "--checkpoint_dir", str(tmp_path / "ck"),
                "-o", str(out), "--data_dir", DATA_DIR])
    sweep = json.loads((out / "beta_sweep.json").read_text())
    assert sorted((r["beta"] is None, r["beta"] or 0, r["seed"]) for r in sweep["runs"]) == \
        [(False, 0.0, 0), (False, 0.0, 1), (False, 4.0, 0), (False, 4.0, 1), (True, 0, 0), (True, 0, 1)]
    for r in sweep["runs"]:
        assert {"beta", "seed", "rate_nats", "distortion_nats", "neg_elbo_nats", "active_dims", "fid"} <= set(r)
        if r["beta"] is None:
            assert r["rate_nats"] is None and r["neg_elbo_nats"] is None
        else:
            assert 0 <= r["active_dims"] <= 2
            # on the same images, -ELBO >= IWAE >= -log p(x), up to the estimates' sampling noise: these one-epoch
            # models' bounds can be within hundredths of a nat of each other (quadrature is skipped, saying why,
            # where the posteriors reach beyond its box)
            assert r["images"] == 100 and r["neg_elbo_nats"] > r["iwae_nll"] - 0.1, r
            assert (r["nll_nats"] is None) == ("nll_skipped" in r)
            assert r["nll_nats"] is None or r["iwae_nll"] > r["nll_nats"] - 0.1, r
    for name in ("beta_sweep.md", "beta_rate_distortion.png", "beta_latents.png", "beta_samples.png"):
        assert (out / name).stat().st_size > 1000
    assert "VAE, β = 4" in (out / "beta_sweep.md").read_text()


def test_reports_are_redrawn_from_the_committed_json_alone_and_match_what_is_committed(tmp_path):
    """--report_only rebuilds study.md and the Markdown blocks from readme/study.json: they must equal the
    committed ones (so no generated table was edited by hand, and none is stale against its JSON)."""
    import shutil
    from conftest import ROOT
    with open(os.path.join(ROOT, "readme", "study.json")) as f:
        if "provenance" not in json.load(f):
            pytest.skip("the committed readme/study.json predates the study's current format (no provenance): "
                        "it is regenerated, with its reports, once the results issue's code is complete")
    out, docs = tmp_path / "readme", tmp_path / "docs"
    out.mkdir(), docs.mkdir()
    shutil.copy(os.path.join(ROOT, "readme", "study.json"), out)
    shutil.copy(os.path.join(ROOT, "docs", "study.md"), docs)
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path)
    if os.path.exists(os.path.join(ROOT, "readme", "confirmatory", "study.json")):  # the headline's other column
        shutil.copytree(os.path.join(ROOT, "readme", "confirmatory"), out / "confirmatory")
    for name in ("study.md", "README.md"):
        target = docs / name if name == "study.md" else tmp_path / name
        target.write_text(re.sub(r"(<!-- (study|headline):begin -->\n).*?(<!-- \2:end -->)", r"\1\3",
                                 target.read_text(), flags=re.S))  # emptied: the run must refill them
    study.main(["--report_only", "-o", str(out), "--docs_dir", str(docs), "--readme", str(tmp_path / "README.md")])
    def without_statistics_commit(text):  # where the statistics were recomputed: this checkout, not the committed
        return re.sub(r"; statistics recomputed from those runs' values at commit .*? by `[^`]*`", "", text)
    with open(os.path.join(ROOT, "readme", "study.md")) as f:
        assert without_statistics_commit((out / "study.md").read_text()) == without_statistics_commit(f.read())
    with open(os.path.join(ROOT, "docs", "study.md")) as f:
        assert (docs / "study.md").read_text() == f.read()
    with open(os.path.join(ROOT, "README.md")) as f:
        committed = f.read()
    def table(readme):  # the verdicts; the line under them names the JSON's path and commit, which differ here
        return re.search(r"<!-- headline:begin -->(.*?)\n\nCells:", readme, re.S).group(1)
    assert table((tmp_path / "README.md").read_text()) == table(committed)
    assert (out / "study_samplers.png").stat().st_size > 10000


def test_report_only_without_a_study_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        study.main(["--report_only", "-o", str(tmp_path), "--readme", "none"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'study.json'}: no such file")
    (tmp_path / "study.json").write_text(json.dumps({"command": "python study.py", "runs": []}))  # an older format
    before = (tmp_path / "study.json").read_bytes()
    with pytest.raises(SystemExit) as stop:
        study.main(["--report_only", "-o", str(tmp_path), "--readme", "none"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "made by an older version" in err
    assert (tmp_path / "study.json").read_bytes() == before and not (tmp_path / "study.md").exists()


@pytest.mark.slow
def test_a_run_that_fails_in_a_parallel_study_is_one_error_line_and_the_others_finish(tmp_path):
    """One run's checkpoint is being written by another process (a live lock): that run fails with its error
    line, the other runs train and evaluate, the exit status says it; the next call only does what is left."""
    ck, out = tmp_path / "ck", tmp_path / "out"
    (ck / "study" / "mnist-seed1").mkdir(parents=True)
    argv = ["--quick", "--jobs", "2", "--datasets", "mnist", "--checkpoint_dir", str(ck), "-o", str(out),
            "--data_dir", DATA_DIR]
    with lock_held_elsewhere(ck / "study" / "mnist-seed1" / "vae.pt") as holder:
        result = run_script("study.py", *argv)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1
    assert errors[0].startswith("error: mnist-vae-seed1: ") and f"being written by process {holder.pid}" in errors[0]
    assert not (out / "study.json").exists()
    done = sorted(p.relative_to(ck) for p in ck.rglob("*.pt"))
    assert [str(p) for p in done] == ["autoencoder.pt", "study/mnist-seed1/autoencoder.pt", "vae.pt"]
    mtimes = {p: (ck / p).stat().st_mtime_ns for p in done}
    assert run_script("study.py", *argv).returncode == 0  # the lock's process is gone, and its lock with it
    assert {p: (ck / p).stat().st_mtime_ns for p in done} == mtimes  # nothing finished is trained again
    assert len(json.loads((out / "study.json").read_text())["runs"]) == 4 and not list(ck.rglob("*.lock"))


@pytest.mark.slow
def test_a_parallel_study_killed_mid_way_resumes_without_losing_or_retraining_a_run(tmp_path):
    """kill -9 of the main process and of its workers, mid-study; the same command then finishes the study,
    trains no finished run again, and leaves no lock or temporary file behind."""
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT
    ck, out = tmp_path / "ck", tmp_path / "out"
    argv = ["--quick", "--jobs", "2", "--datasets", "mnist", "--checkpoint_dir", str(ck),
            "-o", str(out), "--data_dir", DATA_DIR, "--logdir", str(tmp_path / "logs")]
    study_process = subprocess.Popen([sys.executable, os.path.join(ROOT, "study.py"), *argv], cwd=ROOT,
                                     start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(models.read_checkpoint(p).get("completed")
                                             for p in ck.rglob("*.pt") if not p.name.endswith(".lock")):
        time.sleep(0.2)
    os.kill(study_process.pid, signal.SIGKILL)  # the main process first: its workers are orphaned
    time.sleep(0.5)
    os.killpg(study_process.pid, signal.SIGKILL)  # then every worker
    study_process.wait()
    finished = {p: p.stat().st_mtime_ns for p in ck.rglob("*.pt") if models.read_checkpoint(p).get("completed")}
    assert finished, "the study was killed before any run finished; the test needs one"
    assert run_script("study.py", *argv).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    result = json.loads((out / "study.json").read_text())
    assert sorted((r["model"], r["seed"]) for r in result["runs"]) == \
        [("autoencoder", 0), ("autoencoder", 1), ("vae", 0), ("vae", 1)]
    assert not [p for p in ck.rglob("*") if p.name.endswith(".lock") or ".pt.tmp" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["training", "evaluating"])
def test_ctrl_c_stops_a_parallel_study_at_once_at_every_stage(tmp_path, stage):
    """Ctrl-C (SIGINT to the terminal's process group) while workers train, and while one evaluates: the study
    stops within seconds with one line and status 130, leaves no worker, lock or temporary file, and the same
    command then finishes it."""
    import signal
    import subprocess
    import sys
    from conftest import ROOT
    ck, out = tmp_path / "ck", tmp_path / "out"
    argv = ["--quick", "--jobs", "2", "--datasets", "mnist", "--checkpoint_dir", str(ck),
            "-o", str(out), "--data_dir", DATA_DIR, "--logdir", str(tmp_path / "logs")]
    # the study as a terminal starts it: SIGINT handled. A shell starts a background job (`pytest ... &` in a
    # script, as CI runners may) with SIGINT ignored, and an ignored signal stays ignored in every child: the
    # study would then rightly ignore Ctrl-C too and run to its end
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        study_process = subprocess.Popen([sys.executable, os.path.join(ROOT, "study.py"), *argv], cwd=ROOT,
                                         start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)
    try:
        _interrupt_at(study_process, stage, ck)
    finally:  # a failed check above: neither the study nor a worker may outlive the test
        try:
            os.killpg(study_process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        study_process.wait()
    assert run_script("study.py", *argv).returncode == 0
    assert len(json.loads((out / "study.json").read_text())["runs"]) == 4


def _interrupt_at(study_process, stage, ck):
    """Ctrl-C once the study reaches the stage; then the checks of a prompt, clean stop."""
    import signal
    import subprocess
    import time
    evaluations = ck / "study" / "evaluations"

    def reached():
        if stage == "training":
            return any(p.name.endswith(".lock") for p in ck.rglob("*"))
        return any(p.name.startswith("mnist-") for p in evaluations.glob("*.json")) if evaluations.exists() else False
    deadline = time.time() + 120
    while time.time() < deadline and not reached():
        time.sleep(0.1)
    assert reached(), f"the study never reached {stage}"
    time.sleep(1.0)
    os.killpg(study_process.pid, signal.SIGINT)
    stopped_at = time.time()
    try:
        _, stderr = study_process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("the study was still running 60 s after Ctrl-C") from None
    # the status and last line say which way a slow stop went: 130 and "interrupted" (it stopped, late), or 0 (the
    # Ctrl-C was lost and the study ran to its end)
    took = time.time() - stopped_at
    assert took < 15, (f"the study took {took:.1f} s to stop after Ctrl-C (status {study_process.returncode}, "
                       f"this process's SIGINT handler {signal.getsignal(signal.SIGINT)}): {stderr[-400:]!r}")
    assert study_process.returncode == 130 and "interrupted: finished runs" in stderr
    assert "Traceback" not in stderr and "leaked" not in stderr
    def group_alive():  # its workers (and multiprocessing's resource tracker, which goes a moment later)
        try:
            os.killpg(study_process.pid, 0)
            return True
        except ProcessLookupError:
            return False
    deadline = time.time() + 10
    while group_alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not group_alive(), "a worker outlived the study"
    assert not [p for p in ck.rglob("*") if p.name.endswith(".lock") or ".pt.tmp" in p.name]


def test_a_measure_a_run_could_not_take_is_left_out_of_the_mean_and_n_says_so():
    from lab import seed_study
    runs = [{"dataset": "mnist", "model": "vae", "seed": s, "samplers": {},
             "metrics": {"quadrature_nll": None if s == 0 else 130.0 + s, "quadrature_skipped": "beyond the box"}}
            for s in range(3)]
    (entry,) = seed_study.summarise(runs)
    assert entry["metric"] == "quadrature_nll" and entry["n"] == 2 and entry["mean"] == pytest.approx(131.5)


def committed_results():
    from conftest import ROOT
    return sorted(os.path.relpath(os.path.join(folder, name), ROOT)
                  for folder, _, names in os.walk(os.path.join(ROOT, "readme")) for name in names if name.endswith(".json"))


@pytest.mark.parametrize("path", committed_results())
def test_every_committed_result_is_strict_json_with_its_provenance(path):
    from conftest import ROOT
    text = open(os.path.join(ROOT, path)).read()

    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    result = json.loads(text, parse_constant=refuse)
    assert "provenance" in result, f"{path} does not say how it was made"
    assert {"commit", "dirty", "torch", "cpu", "threads", "jobs", "wall_seconds", "command"} <= set(result["provenance"])
    assert result["provenance"]["dirty"] is False, f"{path} was made by code with uncommitted changes"


@pytest.mark.slow
def test_the_committed_study_is_what_the_current_code_computes_from_the_committed_checkpoints():
    """The drift guard: seed 0's AutoEncoder on MNIST (the committed checkpoints/autoencoder.pt) evaluated through
    the study now, against its row in readme/study.json. Exact on the machine that made it; elsewhere within
    the tolerances below, which float differences between CPUs and library builds stay far inside."""
    from conftest import ROOT
    from lab import config, runner
    from lab.config import StudyConfig
    with open(os.path.join(ROOT, "readme", "study.json")) as f:
        committed = json.load(f)
    if committed.get("settings", {}).get("version") != runner.EVALUATION_VERSION:
        pytest.skip(f"readme/study.json was made by evaluation version {committed.get('settings', {}).get('version')}, "
                    f"the code is at {runner.EVALUATION_VERSION}: it is regenerated with the results issue")
    row = next(r for r in committed["runs"] if (r["dataset"], r["model"], r["seed"]) == ("mnist", "autoencoder", 0))
    path = os.path.join(ROOT, "checkpoints", "autoencoder.pt")
    from lab.files import file_sha256
    assert file_sha256(path) == row["checkpoint_sha256"], "the committed checkpoint is not the one the study scored"
    settings = committed["settings"]
    evaluation = config.replace(seed_study.EVALUATION, num_samples=settings["num_samples"],
                                iwae_draws=settings.get("iwae_draws", settings.get("iwae_k")),
                                iwae_images=settings["iwae_images"])
    study_config = StudyConfig(data_dir=DATA_DIR, checkpoint_dir=os.path.join(ROOT, "checkpoints"), device="cpu",
                               evaluation=evaluation)
    now = seed_study.evaluate_run(models.load_checkpoint(path), runner.run_splits("mnist", study_config),
                                  seed_study.prepare("mnist", study_config), study_config)
    for metric in ("recon", "objective", "knn5_accuracy", "mmd2_to_prior", "own_grid_confident", "ink_f1"):
        assert now["metrics"][metric] == pytest.approx(row["metrics"][metric], rel=1e-3, abs=1e-4), metric
    for sampler in ("prior", "gaussian", "gmm"):
        for metric in ("fid", "density", "coverage", "confident"):
            assert now["samplers"][sampler][metric] == pytest.approx(row["samplers"][sampler][metric], rel=0.02,
                                                                     abs=0.005), (sampler, metric)


def test_a_diverged_run_is_found_and_the_verdicts_are_also_given_without_its_seed():
    def run(model, seed, objective):
        return {"dataset": "mnist", "model": model, "seed": seed, "samplers": {},
                "metrics": {"objective": objective, "mmd2_to_prior": (0.3 if model == "autoencoder" else 0.02) + 0.001 * seed}}
    runs = [run("autoencoder", s, 126.8 + 0.1 * s) for s in range(5)] + \
        [run("vae", s, 150.3 if s == 4 else 135.3 + 0.1 * s) for s in range(5)]
    (found,) = seed_study.diverged(runs)
    assert (found["model"], found["seed"], found["objective"]) == ("vae", 4, 150.3)
    kept = seed_study.without_seeds_of(runs, [found])
    assert len(kept) == 8 and all(r["seed"] != 4 for r in kept)
    assert seed_study.compare(kept)[0]["n"] == 4
    assert seed_study.diverged([r for r in runs if r["seed"] != 4]) == []  # ordinary spread is not divergence


def test_the_runs_line_names_the_last_invocation_and_the_wall_time_summed_over_all():
    from lab import reports
    line = reports.runs_line({"commit": "abcdef1234567", "dirty": False, "command": "python study.py", "cpu": "a CPU",
                              "threads": 2, "jobs": 2, "torch": "2.x", "python": "3.11", "wall_seconds": 720.0})
    assert "by `python study.py`, last at commit abcdef1234 on a CPU" in line
    assert line.endswith("12.0 min of wall time over every invocation that trained or evaluated them")
    assert "with uncommitted changes" in reports.runs_line({"commit": "abc", "dirty": True})


def test_a_rerun_that_finds_every_run_cached_keeps_the_provenance_of_the_result_it_rewrites(tmp_path):
    from lab.config import StudyConfig
    rows = [{"dataset": "mnist", "model": "vae", "seed": 0, "checkpoint_sha256": "ab", "metrics": {"nll": 131.5}}]
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"provenance": {"commit": "the-run-that-evaluated", "command": "python study.py"},
                                "runs": rows}))
    settings = StudyConfig(checkpoint_dir=str(tmp_path))
    cached, fresh = {"from_cache": True}, {}
    kept = study.made_by([], settings, "", [cached], rows, str(path))
    assert kept["provenance"]["commit"] == "the-run-that-evaluated"
    assert kept["statistics_provenance"]["command"] == settings.command  # this invocation recomputed the statistics
    # any run trained or evaluated here, other rows, or no earlier result: this invocation's own provenance
    for records, these_rows, where in (([cached, fresh], rows, path), ([cached], [{**rows[0], "seed": 1}], path),
                                       ([cached], rows, tmp_path / "none.json")):
        made = study.made_by([], settings, "", records, these_rows, str(where))
        assert set(made) == {"provenance"} and made["provenance"]["command"] == settings.command
        assert made["provenance"]["commit"] != "the-run-that-evaluated"


def test_a_script_run_in_process_leaves_the_test_process_signal_handlers_as_they_were(tmp_path):
    # study.py's main installs its SIGTERM handler (Ctrl-C's path: the last epoch kept); run in-process by
    # run_script, it must not stay installed in the test process, whose later subprocesses and stops it would change
    import signal
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = run_script("study.py", "--report_only", "-o", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_sweep_report_says_what_its_likelihoods_are_exact_to_and_how_many_draws_its_bounds_use():
    from lab import study_reports
    runs = [{"beta": b, "quadrature_step_error_nats": e, "iwae_ess": s}
            for b, e, s in ((None, None, None), (0.1, 0.0063, 6.9), (1.0, 0.0094, 9.9), (8.0, 0.0071, 4.4))]
    text = study_reports.certification(runs, {"iwae_draws": 20})
    assert text.startswith(" Each −log p(x)") and "0.009400 nats over 3 runs, below the 0.01-nat bound" in text
    assert "4.4 to 9.9 of its 20 draws" in text
    runs[1]["quadrature_step_error_nats"] = 0.01004  # an image still above the bound at the finest step
    text = study_reports.certification(runs, {"iwae_draws": 20})
    assert text.startswith(" Not every") and "0.010040 nats over 3 runs, 1 of them above the 0.01-nat bound" in text
    assert study_reports.certification([{"beta": 1.0, "nll_nats": 131.6}], {"iwae_k": 20}) == ""  # before version 5
