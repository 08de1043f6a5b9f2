"""What the four scripts (train.py, evaluate.py, explore_latent_space.py, study.py) are made of.

One file per concept; each imports only from the layers above it in this list:

    files.py            atomic writes, one writer per checkpoint (WriterLock), the UserError every script reports
    ../data.py          the datasets as tensors
    ../models.py        the AutoEncoder and the VAE, their losses, the importance-weighted estimator, checkpoints
    cli.py              what the scripts share on the command line: argument types, --device, checkpoint selection
    measures.py         numbers that describe one trained model (losses, likelihood, codes, reconstructions)
    judge.py            the digit classifier that judges generated images, and its features
    sample_measures.py  numbers that describe a set of generated images (Fréchet distance, density, coverage)
    samplers.py         ways to draw codes for a model: its prior, or densities fitted to its codes
    seed_statistics.py  intervals and tests over training seeds (t, bootstrap, TOST, Holm), the verdict on a claim
    run_log.py          TensorBoard runs: folders and the HPARAMS summary
    training.py         the training loop, checkpoints every epoch, resuming
    evaluation.py       every measure of one model, as evaluate.py's report lists them
    runner.py           the cached experiment runner: configurations, train what is missing, cached evaluations,
                        --jobs runs at once in worker processes
    seed_study.py       the study: claims, what each run is scored on, paired comparisons and verdicts
    beta_sweep.py       the β continuum: rate, distortion and bounds of VAEs from β = 0 to 8
    reports.py          Markdown tables and README blocks, from the result dicts only
    study_reports.py    the study's and the sweep's reports, figures and blocks, from their JSON alone
    figures.py          one function per figure of a model's latent space
    study_figures.py    the study's and the β sweep's figures
    explorer_page.py    the self-contained browser page (explorer_template.html)
"""
