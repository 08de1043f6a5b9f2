"""The study's and the β sweep's written results: the Markdown reports, the figures and the generated blocks
of README.md and docs/, from study.json's and beta_sweep.json's contents alone (study.py --report_only)."""
import json
import os

import data
import models
from lab import beta_sweep, measures, reports, seed_study, study_figures
from lab.figures import save_atomically
from lab.files import UserError, strict_json, write_atomically
from lab.provenance import provenance


def statistics_line(result):
    """Where a result's statistics were recomputed from its runs' values (study.py --report_only), if they were."""
    made = result.get("statistics_provenance")
    if not made:
        return ""
    commit = (made.get("commit") or "no git checkout")[:10] + (" with uncommitted changes" if made.get("dirty") else "")
    return f"; statistics recomputed from those runs' values at commit {commit} by `{made.get('command')}`"


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def refresh_headline(readme, output_dir, study=None, confirmatory=None, confirmatory_path=None):
    """README's headline from the exploratory study (study: its contents, or read from output_dir/study.json) and
    the confirmatory one (its contents and path; default: output_dir/confirmatory/study.json), where they exist."""
    study_path = os.path.join(output_dir, "study.json")
    confirmatory_path = confirmatory_path or os.path.join(output_dir, "confirmatory", "study.json")
    study = study or read_json(study_path)
    confirmatory = confirmatory or read_json(confirmatory_path)
    if study is None:
        return
    reports.replace_readme_block(readme, reports.headline(study, study_path, confirmatory, confirmatory_path),
                                 "headline")


def study_reports(study, args):
    """study.md, study_samplers.png and the Markdown blocks, from study.json's contents alone."""
    claims = reports.claims_table(study["comparisons"])
    samplers = reports.samplers_table(study["summary"], study["floors"])
    n = len(study["seeds"])
    header = (f"{n} seeds, {reports.runs_line(study['provenance'])}{statistics_line(study)}.\n\n"
              "Claims: each is read off its primary measure (in bold type; the reason is in "
              "`lab/seed_study.py`), as the paired difference VAE − AutoEncoder over seeds: a two-sided t test, "
              "Holm-corrected across the claims of a dataset; the fitted-mixture claim by two one-sided tests "
              "against ±margin, Holm-adjusted too (the 90 % interval shown is before the adjustment; 'not equivalent' "
              "when it lies wholly outside the margin). 'Detectable': the smallest mean difference the paired test "
              "detects with power 0.8 at Holm's strictest level, given these seeds' spread, so that 'not shown' says "
              "what could have been shown. Secondary measures are shown without a verdict. Samplers: mean over "
              f"seeds with its 95 % t interval ({n} seeds; drawn inside [0, 1] for shares).\n\n")
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
        refresh_headline(args.readme, args.output_dir, study)
    print(claims)
    return ["study.json", "study.md", "study_samplers.png"]


def confirmatory_reports(result, output_dir):
    """The confirmatory study's study.md, from its study.json's contents alone."""
    plan = result["plan"]
    named = list({(r["dataset"], r["model"], r["seed"]): r for r in
                  [r for r in result["runs"] if r.get("failed")] + (result.get("diverged") or [])}.values())
    text = (f"# The confirmatory study\n\nPlan `{plan['path']}` (SHA-256 {plan['sha256'][:12]}, committed at "
            f"{(plan['commit'] or 'no commit')[:10]}; n = {plan['n']} per model from `{plan['power_command']}`), "
            f"{reports.trained_line(result)}; this report {reports.provenance_line(result['provenance'])}.\n\n"
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


def certification(runs, settings):
    """What the sweep's likelihoods are exact to, and how many draws its IWAE bounds effectively use: one or two
    sentences for the report's header ('' for a file made before evaluation version 5 stored them)."""
    errors = [r["quadrature_step_error_nats"] for r in runs if r.get("quadrature_step_error_nats") is not None]
    ess = [r["iwae_ess"] for r in runs if r.get("iwae_ess") is not None]
    bound = measures.QUADRATURE_BOUND
    text = ""
    if errors:
        above = sum(e > bound for e in errors)
        text += (f" {'Each' if not above else 'Not every'} −log p(x) by quadrature converged in its grid step: the "
                 f"largest change of one image's value at the last halving of its step is {max(errors):.6f} nats "
                 f"over {len(errors)} runs" + (f", {above} of them above the {bound}-nat bound." if above else
                                                f", below the {bound}-nat bound.") +
                 " (A narrow mode away from an image's posterior, which no step would see, is not counted in the "
                 "sweep's files.)")
    if ess:
        text += (f" The IWAE bound's importance weights have an effective sample size of {min(ess):.1f} to "
                 f"{max(ess):.1f} of its {settings.get('iwae_draws')} draws per image (mean over images, per run).")
    return text


def sweep_reports(sweep, args):
    """beta_sweep.md, the β figures and the Markdown block, from beta_sweep.json's contents (and, for the rows of
    panels, the first seed's checkpoints)."""
    table = reports.sweep_table(sweep["summary"])
    settings, dataset = sweep["settings"], sweep["dataset"]
    write_atomically(os.path.join(args.output_dir, "beta_sweep.md"),
                     f"# The β continuum\n\n{len(sweep['seeds'])} seeds, {dataset}, "
                     f"{reports.runs_line(sweep['provenance'])}{statistics_line(sweep)}. Test set; means over seeds with 95 % "
                     f"t intervals. −ELBO, IWAE (k = {settings.get('iwae_draws', settings.get('iwae_k'))}) and −log p(x) by "
                     f"quadrature on the same {settings['iwae_images']} test images.{certification(sweep['runs'], settings)}\n\n"
                     + table)
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


def from_json(args, command=None):
    """--report_only: the study's (or sweep's) statistics recomputed by this code from the runs' values in the
    JSON of output_dir (no run trained or evaluated), written back with `statistics_provenance` (the commit that
    computed them; `provenance` stays that of the runs), then its reports."""
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
    if args.beta_sweep:
        result["summary"] = beta_sweep.summarise_sweep(result["runs"])
    else:
        for stale in ("comparisons_without_diverged",):
            result.pop(stale, None)
        result |= seed_study.statistics_of(result["runs"])
    result["statistics_provenance"] = provenance(command, None, 1)
    write_atomically(path, strict_json(result))
    return (sweep_reports if args.beta_sweep else study_reports)(result, args)
