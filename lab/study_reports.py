"""The study's and the β sweep's written results: the Markdown reports, the figures and the generated blocks
of README.md and docs/, from study.json's and beta_sweep.json's contents alone (study.py --report_only)."""
import json
import os

import data
import models
from lab import reports, study_figures
from lab.figures import save_atomically
from lab.files import UserError, write_atomically


def study_reports(study, args):
    """study.md, study_samplers.png and the Markdown blocks, from study.json's contents alone."""
    claims = reports.claims_table(study["comparisons"])
    samplers = reports.samplers_table(study["summary"], study["floors"])
    n = len(study["seeds"])
    header = (f"{n} seeds, {reports.provenance_line(study['provenance'])}.\n\n"
              "Claims: each is read off its primary measure (in bold type; the reason is in "
              "`lab/seed_study.py`), as the paired difference VAE − AutoEncoder over seeds: a two-sided t test, "
              "Holm-corrected across the claims of a dataset; the fitted-mixture claim by two one-sided tests "
              "against ±margin, Holm-adjusted too (the 90 % interval shown is before the adjustment). Secondary measures are shown without a verdict. Samplers: "
              f"mean over seeds, 95 % percentile-bootstrap interval (inside each measure's range; with {n} seeds "
              "it is narrower than a t interval would be).\n\n")
    diverged = study.get("diverged") or []
    if diverged:
        listed = ", ".join(f"{d['dataset']} {d['model']} seed {d['seed']}" for d in diverged)
        claims += (f"\n**Diverged runs** (test objective far above the other seeds'): {listed}. The claims without "
                   f"those seeds:\n\n" + reports.claims_table(study["comparisons_without_diverged"]))
    else:
        header += "No run diverged (every test objective within 5 nats of its seeds' median).\n\n"
    write_atomically(os.path.join(args.output_dir, "study.md"),
                     "# The study\n\n" + header + "## Claims\n\n" + claims + "\n## Samplers\n\n" + samplers)
    save_atomically(os.path.join(args.output_dir, "study_samplers.png"),
                    study_figures.samplers_figure(study["summary"], study["floors"]))
    if args.readme != "none":
        reports.replace_readme_block(os.path.join(args.docs_dir, "study.md"), claims + "\n" + samplers, "study")
        reports.replace_readme_block(args.readme, reports.headline(study, os.path.join(args.output_dir, "study.json")),
                                     "headline")
    print(claims)
    return ["study.json", "study.md", "study_samplers.png"]


def confirmatory_reports(result, output_dir):
    """The confirmatory study's study.md, from its study.json's contents alone."""
    plan = result["plan"]
    named = list({(r["dataset"], r["model"], r["seed"]): r for r in
                  [r for r in result["runs"] if r.get("failed")] + (result.get("diverged") or [])}.values())
    text = (f"# The confirmatory study\n\nPlan `{plan['path']}` (SHA-256 {plan['sha256'][:12]}, committed at "
            f"{(plan['commit'] or 'no commit')[:10]}; n = {plan['n']} per model from `{plan['power_command']}`), "
            f"{reports.provenance_line(result['provenance'])}.\n\n"
            "Each claim: a two-sided Welch t test on each model's per-seed values of its primary measure, one Holm "
            "family over every claim, the plan's verdict rule. 'Detectable' is the smallest difference the realised "
            "n detects with power 0.8 at the family's strictest level: 'not shown' says no more than that.\n\n"
            + reports.confirmatory_table(result["comparisons"]))
    if named:
        text += ("\nRuns named by the plan's divergence rule (kept in every test with the values they have): "
                 + ", ".join(f"{r['dataset']} {r['model']} seed {r['seed']}" for r in named) + ".\n")
    else:
        text += "\nNo run diverged, and every run finished.\n"
    write_atomically(os.path.join(output_dir, "study.md"), text)
    print(reports.confirmatory_table(result["comparisons"]))
    return ["study.json", "study.md"]


def sweep_reports(sweep, args):
    """beta_sweep.md, the β figures and the Markdown block, from beta_sweep.json's contents (and, for the rows of
    panels, the first seed's checkpoints)."""
    table = reports.sweep_table(sweep["summary"])
    settings, dataset = sweep["settings"], sweep["dataset"]
    write_atomically(os.path.join(args.output_dir, "beta_sweep.md"),
                     f"# The β continuum\n\n{len(sweep['seeds'])} seeds, {dataset}, "
                     f"{reports.provenance_line(sweep['provenance'])}. Test set; means over seeds with 95 % "
                     f"percentile-bootstrap intervals. −ELBO, IWAE (k = {settings.get('iwae_draws', settings.get('iwae_k'))}) and −log p(x) by "
                     f"quadrature on the same {settings['iwae_images']} test images.\n\n" + table)
    written = ["beta_sweep.json", "beta_sweep.md", "beta_rate_distortion.png"]
    save_atomically(os.path.join(args.output_dir, "beta_rate_distortion.png"),
                    study_figures.rate_distortion_figure(sweep["runs"]))
    first_seed = min(sweep["seeds"])
    shown = [r for r in sweep["runs"] if r["seed"] == first_seed]
    if all(os.path.exists(r["checkpoint"]) for r in shown):
        shown = {r["beta"]: models.load_checkpoint(r["checkpoint"]) for r in shown}
        test = data.load_dataset(dataset, args.data_dir)["test"]
        n = min(len(test), 5000)
        save_atomically(os.path.join(args.output_dir, "beta_latents.png"), study_figures.sweep_row_figure(
            shown, study_figures.draw_latent_scatter(test.images[:n], test.labels[:n]),
            f"{n:,} test codes (posterior means), seed {first_seed}: each panel on its own scale"))
        save_atomically(os.path.join(args.output_dir, "beta_samples.png"), study_figures.sweep_row_figure(
            shown, study_figures.draw_prior_samples(), f"decoded z ~ N(0, I), seed {first_seed}"))
        written += ["beta_latents.png", "beta_samples.png"]
    else:
        print(f"seed {first_seed}'s checkpoints are not all here: beta_latents.png and beta_samples.png not redrawn")
    if args.readme != "none":
        reports.replace_readme_block(os.path.join(args.docs_dir, "beta-continuum.md"), table, "beta")
    print(table)
    return written


def from_json(args):
    """--report_only: the reports of the study (or sweep) whose JSON is in output_dir, nothing recomputed."""
    path = os.path.join(args.output_dir, "beta_sweep.json" if args.beta_sweep else "study.json")
    try:
        with open(path) as f:
            result = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; run the study first (without --report_only)") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if "provenance" not in result:
        raise UserError(f"{path}: made by an older version of study.py (no provenance); run the "
                        f"{'sweep' if args.beta_sweep else 'study'} again without --report_only to remake it")
    return (sweep_reports if args.beta_sweep else study_reports)(result, args)
