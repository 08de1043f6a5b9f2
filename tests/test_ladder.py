import json
import subprocess
import sys

import pytest
import torch
from scipy import stats

from lab import ladder
from conftest import ROOT


def fake_report(rungs, commit):
    """evaluate.py's report holding the given rungs: {seed-0 column: [-log p(x) of each seed]}."""
    models, groups = {}, []
    for seed0, values in rungs.items():
        names = [seed0] + [f"{seed0}_seed{s}" for s in range(1, len(values))]
        for name, v in zip(names, values):
            models[name] = {"nll": v, "iwae_nll_k500": v + 3, "neg_elbo": v + 6, "quadrature_step_error_nats": 0.004,
                            "quadrature_missed_mass_images": 0, "bound_images": 1000}
        groups.append({"runs": names, "seeds": list(range(len(values)))})
    return {"provenance": {"commit": commit, "dirty": False, "command": "python evaluate.py ...", "cpu": "a CPU"},
            "models": models, "across_seeds": groups}


def test_the_ladder_table_and_figure_come_from_the_reports_alone(tmp_path):
    columns = [seed0 for _, _, seed0 in ladder.RUNGS]
    values = {columns[0]: [129.0, 129.4, 128.8], columns[1]: [128.0, 128.6], columns[2]: [127.5, 127.9],
              columns[3]: [131.0, 131.2, 131.4], columns[4]: [128.1, 128.3], columns[5]: [124.6, 124.7, 124.9]}
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps(fake_report({c: values[c] for c in columns[::2]}, "a" * 40)))
    paths[1].write_text(json.dumps(fake_report({c: values[c] for c in columns[1::2]}, "b" * 40)))
    rungs = ladder.main([str(p) for p in paths], str(tmp_path))
    assert [r["nll"]["values"] for r in rungs] == [values[c] for c in columns]
    assert rungs[5]["iwae_nll_k500"]["mean"] == pytest.approx(sum(values[columns[5]]) / 3 + 3)
    table = (tmp_path / "ladder.md").read_text()
    # rung 4 against rung 3: Welch's interval and p, as scipy computes them
    a, b = values[columns[2]], values[columns[3]]
    p = stats.ttest_ind(b, a, equal_var=False).pvalue
    row = next(line for line in table.splitlines() if line.startswith("| 4 |"))
    assert f"{sum(b) / 3 - sum(a) / 2:+.2f} [" in row and f"(p = {p:.2g}; " in row
    steps = [stats.ttest_ind(values[c], values[prev], equal_var=False).pvalue for prev, c in zip(columns, columns[1:])]
    holm_4 = max(min(1.0, (5 - rank) * q) for rank, q in enumerate(sorted(steps)) if q <= p)  # Holm's step-down
    assert f"; {holm_4:.2g})" in row
    assert "| 131.20 [" in row and "aaaaaaa" in table and "bbbbbbb" in table
    assert "on the first 1 000 validation images" in table
    assert (tmp_path / "ladder.png").stat().st_size > 10_000


@pytest.mark.slow  # a fresh interpreter (2.4 s); the fast tier calls ladder.cli in-process
def test_the_ladder_without_its_reports_is_one_error_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lab.ladder"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": ROOT})
    assert result.returncode == 2 and result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1


def test_the_gap_table_compares_each_candidate_with_their_protocol_here_on_their_estimator(tmp_path, capsys):
    protocol, candidate = tmp_path / "protocol.json", tmp_path / "candidate.json"

    def report(seed0, values, elbos, commit, exact=None):
        made = fake_report({seed0: values}, commit) | {"split": "test"}
        for i, (model, elbo) in enumerate(zip(made["models"].values(), elbos)):  # spreads of their own: each
            model["neg_elbo"] = elbo                                              # column is tested
            model["nll"] = exact[i] if exact else None
        return made
    protocol.write_text(json.dumps(report(ladder.PROTOCOL[1], [129.4, 129.6, 129.2], [136.0, 135.0, 136.5], "c" * 40,
                                          exact=[128.9, 129.0, 128.7])))
    candidate.write_text(json.dumps(report("cand_seed0", [131.0, 132.1, 131.5], [140.0, 137.0, 137.2], "d" * 40,
                                           exact=[129.0, 129.2, 129.1])))
    _, rows = ladder.gap(str(protocol), [("a change", str(candidate), "cand_seed0")], str(tmp_path))
    assert rows[0][1]["iwae_nll_k500"]["values"] == pytest.approx([134.0, 135.1, 134.5])
    table = (tmp_path / "gap.md").read_text()
    p = stats.ttest_ind([134.0, 135.1, 134.5], [132.4, 132.6, 132.2], equal_var=False).pvalue
    row = next(line for line in table.splitlines() if "a change" in line)
    assert "| +2.13 [" in row and f"(p = {p:.2g}) |" in row and "| 138.07 [" in row  # IS-500 step, -ELBO mean
    p_exact = stats.ttest_ind([129.0, 129.2, 129.1], [128.9, 129.0, 128.7], equal_var=False).pvalue
    assert row.endswith(f"| +0.23 [{row.split('| +0.23 [')[1].split(']')[0]}] (p = {p_exact:.2g}) |")  # the exact step
    # a planned split: the arm with both changes less the arm with one, in a table of its own
    other = tmp_path / "other.json"
    other.write_text(json.dumps(report("other_seed0", [130.0, 130.2, 129.9], [137.0, 136.0, 136.6], "e" * 40,
                                       exact=[128.0, 128.3, 128.1])))
    ladder.gap(str(protocol), [("a change", str(candidate), "cand_seed0"), ("one change", str(other), "other_seed0")],
               str(tmp_path), splits=[("what differs", "cand_seed0", "other_seed0"), ("absent", "x", "other_seed0")])
    split_rows = [line for line in (tmp_path / "gap.md").read_text().splitlines() if line.startswith("| what differs")]
    p_split = stats.ttest_ind([134.0, 135.1, 134.5], [133.0, 133.2, 132.9], equal_var=False).pvalue
    assert len(split_rows) == 1 and split_rows[0].startswith("| what differs | +1.50 [") and f"(p = {p_split:.2g})" in split_rows[0]
    assert "| +0.97 [" in split_rows[0] and "absent" not in (tmp_path / "gap.md").read_text()
    assert "| split: what differs between two candidates |" in (tmp_path / "gap.md").read_text()
    candidates = {seed0 for _, _, seed0 in ladder.CANDIDATES}  # each planned split names two of the candidates
    assert ladder.SPLITS and all({both, one} <= candidates for _, both, one in ladder.SPLITS)
    # a candidate scored without the quadrature: its exact cells are empty, the rest stands
    candidate.write_text(json.dumps(report("cand_seed0", [131.0, 132.1, 131.5], [140.0, 137.0, 137.2], "d" * 40)))
    ladder.gap(str(protocol), [("a change", str(candidate), "cand_seed0")], str(tmp_path))
    row = next(line for line in (tmp_path / "gap.md").read_text().splitlines() if "a change" in line)
    assert row.endswith(f"(p = {p:.2g}) | – |") and "| – | +2.13 [" in row
    assert "| their protocol, in this code | 3 | 132.40 [" in table and "135.73 ± 0.83" in table
    assert "ccccccc" in table and "ddddddd" in table and "on the 1 000 test images" in table
    # reports that cannot answer: one error line, exit 2 (a missing measure, the validation split, no report)
    no_is500 = report("cand_seed0", [131.0, 132.1], [137.0, 137.2], "d" * 40)
    del no_is500["models"]["cand_seed0"]["iwae_nll_k500"]
    on_val = report("cand_seed0", [131.0, 132.1], [137.0, 137.2], "d" * 40) | {"split": "val"}
    for content, message in ((no_is500, "no iwae_nll_k500"), (on_val, "scored on the val split"), (None, "cannot read")):
        path = tmp_path / "bad.json"
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_text(json.dumps(content))
        with pytest.raises(SystemExit) as stop:
            ladder.gap(str(protocol), [("a change", str(path), "cand_seed0")], str(tmp_path))
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [(["--gap", "--other"], "unknown arguments --gap --other"),
                                           (["--gap"], "cannot read it"), ([], "cannot read it")])  # no reports here
def test_the_ladder_s_command_line_takes_gap_and_nothing_else(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        ladder.cli(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_their_example_estimator_is_the_one_draw_reconstruction_when_the_posterior_is_the_prior():
    # with q(z|x) = N(0, I) = p(z), every p(z_i)/q(z_i|x) is 1: their TensorFlow example's "-log p(x)" is then
    # exactly -log p(x | z_0) at its one draw, whatever k; an estimate of -log p(x) would average p(x|z) instead
    import models
    from lab import measures
    torch.manual_seed(0)
    model = models.VAE(hidden_dims=(16,), latent_dim=2).eval()
    last = model.encoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    images = (torch.rand(7, 1, 28, 28) > 0.5).float()
    z0 = torch.randn((7, 2), generator=torch.Generator().manual_seed(3))  # the estimator's first draw, seed 3
    one_draw = models.bernoulli_cross_entropy(model.decode_logits(z0), images).mean().item()
    for k in (1, 50):
        assert measures.single_decode_is_nll(model, images, k=k, seed=3) == pytest.approx(one_draw, abs=1e-4)
    torch.nn.init.normal_(last.weight)  # a posterior of its own: the prior-over-posterior term now counts
    assert measures.single_decode_is_nll(model, images, k=1, seed=3) != \
        pytest.approx(measures.single_decode_is_nll(model, images, k=50, seed=3), abs=1e-3)


def test_their_estimator_needs_the_reports_checkpoints(tmp_path, capsys):
    from lab import their_estimator
    report = {"dataset": "binarized-mnist", "split": "test", "models": {"a": {}, "b": {}}, "across_seeds": {}, "provenance": {
        "command": f"python evaluate.py {tmp_path}/a.pt {tmp_path}/b.pt --dataset binarized-mnist"}}
    with pytest.raises(SystemExit) as stop:
        their_estimator.checkpoints_of(report, "r.json")
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/a.pt, {tmp_path}/b.pt: not here (docs/binarized-mnist.md has the commands that make them)\n"
    # a script over several arms finds a missing checkpoint before it scores any
    (tmp_path / "r.json").write_text(json.dumps(report | {"provenance": {"command": report["provenance"]["command"]},
                                                          "across_seeds": []}))
    with pytest.raises(SystemExit) as stop:
        their_estimator.gap_script([], "doc", "cmd", tmp_path, "x", [("an arm", str(tmp_path / "r.json"))],
                                   lambda: pytest.fail("scored before every checkpoint was found"), str)
    assert stop.value.code == 2 and "a.pt" in capsys.readouterr().err and not list(tmp_path.glob("x.*"))
    (tmp_path / "a.pt").write_bytes(b"")
    (tmp_path / "b.pt").write_bytes(b"")
    assert their_estimator.checkpoints_of(report, "r.json") == {"a": f"{tmp_path}/a.pt", "b": f"{tmp_path}/b.pt"}
    assert their_estimator.main(["-h"], output_dir=tmp_path) is None and not list(tmp_path.glob("their-*"))
    assert "python -m lab.their_estimator" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        their_estimator.main(["--k", "100"], output_dir=tmp_path)
    assert stop.value.code == 2 and "unknown arguments --k 100" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a report on other images
        their_estimator.checkpoints_of(report | {"dataset": "binarized-mnist", "split": "val"}, "r.json")
    assert "not a report on the binarised MNIST test set" in capsys.readouterr().err


def test_their_example_estimator_takes_the_kl_from_its_draws_at_one_draw():
    # k = 1: the estimator less its one-draw reconstruction term is -(log p(z_1) - log q(z_1|x)), whose mean over
    # images is the KL in closed form (here a softplus posterior, as their code's, the same for every image)
    import models
    from lab import measures
    model = models.VAE(hidden_dims=(16,), latent_dim=2, posterior_scale="softplus").eval()
    last = model.encoder[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([0.8, -0.5, -1.0, 0.3]))  # mean (0.8, -0.5), softplus pre-activations
    n = 20000
    images = torch.zeros(n, 1, 28, 28)
    estimate = measures.single_decode_is_nll(model, images, k=1, seed=5, batch_size=n)
    mu, logvar = model.encode_dist(images[:1])
    generator = torch.Generator().manual_seed(5)
    z0 = mu + torch.exp(0.5 * logvar) * torch.randn((n, 2), generator=generator)
    recon0 = models.bernoulli_cross_entropy(model.decode_logits(z0), images).mean().item()
    kl = models.gaussian_kl(mu, logvar).item()
    assert estimate - recon0 == pytest.approx(kl, abs=0.05) and kl > 1


def test_binarisation_draws_score_the_report_s_models_on_fresh_0_1_images_of_the_same_test_set(tmp_path, mnist,
                                                                                                 binarized_mnist,
                                                                                                 monkeypatch, capsys):
    import data
    import models
    from lab import binarisation_draws, measures
    binarized = binarized_mnist["test"].images
    # the committed seed redraws the very images every binarized-mnist report was scored on
    assert torch.equal(data.binarize(mnist["test"].images, binarisation_draws.COMMITTED), binarized)
    model = models.VAE(hidden_dims=(16,), latent_dim=2).eval()
    path = tmp_path / "m.pt"
    models.save_checkpoint(str(path), model)
    n = 150  # above the estimator's batch of 100
    # the report's IS-K as evaluation.evaluate_model takes it (sample seed 0, its first bound_images images)
    monkeypatch.setattr(binarisation_draws, "K", 20)  # fewer draws than the reports' 500, to keep the test fast
    committed = measures.likelihood_bounds(model, binarized[:n], k=20, seed=0, quadrature=False)["iwae_nll"]
    entry = {"iwae_nll_k20": committed, "bound_images": n, "recon": measures.reconstruction_nats(model, binarized)}
    report = {"dataset": "binarized-mnist", "split": "test", "models": {"m": entry}, "across_seeds": [],
              "provenance": {"command": f"python evaluate.py {path}", "commit": "f" * 40}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    monkeypatch.setattr(binarisation_draws, "FRESH", (binarisation_draws.COMMITTED, 7))
    arm = binarisation_draws.arm("an arm", str(tmp_path / "r.json"), mnist["test"].images)
    row = arm["models"][0]
    assert row["fresh"][str(binarisation_draws.COMMITTED)] == committed  # same settings: only the pixels may differ
    other = measures.iwae_nll_of_split(model, data.binarize(mnist["test"].images, 7)[:n], k=20)
    assert row["fresh"]["7"] == other and abs(other - committed) > 1e-3
    assert row["shift_range"] == [min(0.0, other - committed), max(0.0, other - committed)]
    assert arm["mean_shift"]["values"] == [0.0, other - committed] and arm["mean_shift"]["n"] == 2
    cells = binarisation_draws.table([arm]).splitlines()[2].split(" | ")
    assert cells[1:5] == ["1", f"{committed:.2f}", f"{committed:.2f}", f"{other:.2f}"]
    assert cells[5].startswith(f"{(other - committed) / 2:+.3f} [") and cells[6] == f"{abs(other - committed):.3f} |"
    # a checkpoint that is not the one the report scored, or a report with other draws: one error line each
    for changed, message in ((report | {"models": {"m": entry | {"recon": entry["recon"] + 0.5}}}, "not the checkpoint"),
                             (report | {"provenance": {"command": f"python evaluate.py {path} --sample_seed 3"}},
                              "another sample seed")):
        (tmp_path / "r.json").write_text(json.dumps(changed))
        with pytest.raises(SystemExit) as stop:
            binarisation_draws.arm("an arm", str(tmp_path / "r.json"), mnist["test"].images)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert binarisation_draws.main(["-h"], output_dir=tmp_path) is None and not list(tmp_path.glob("binarisation-*"))
    assert "python -m lab.binarisation_draws" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        binarisation_draws.main(["--seeds", "3"], output_dir=tmp_path)
    assert stop.value.code == 2 and "unknown arguments --seeds 3" in capsys.readouterr().err
