"""What the four scripts (train.py, evaluate.py, explore_latent_space.py, study.py) are made of.

One file per concept; each imports only from the layers above it in this list:

    files.py            atomic writes, one writer per checkpoint (WriterLock), the UserError and DataError every
                        script reports
    ../own_images.py    a user's own images, read whole, checked and hashed
    ../data.py          the datasets as tensors
    ../models.py        the AutoEncoder and the VAE, their losses, the importance-weighted estimator, checkpoints
    names.py            the names the study and its reports share (model kinds, samplers)
    cli.py              what the scripts share on the command line: argument types, --device, checkpoint selection
    config.py           the typed configurations (TrainConfig, EvalConfig, StudyConfig): what identifies a run and
                        keys an evaluation's cache, the flags generated from them, old checkpoints' upgrade
    measures.py         numbers that describe one trained model (losses, likelihood, codes, reconstructions)
    judge.py            the digit classifier that judges generated images, and its features
    sample_measures.py  numbers that describe a set of generated images (Fréchet distance, density, coverage)
    samplers.py         ways to draw codes for a model: its prior, or densities fitted to its codes
    seed_statistics.py  intervals and tests over training seeds (t, Welch, TOST, Holm, power), the verdict
    run_log.py          TensorBoard runs: folders and the HPARAMS summary
    training.py         the training loop, checkpoints every epoch, resuming
    evaluation.py       every measure of one model, as evaluate.py's report lists them
    engine.py           what runs an experiment's tasks: this process, worker processes here, or a Dask cluster
    runner.py           the cached experiment runner: each run one task (train what is missing, evaluate what is
                        not cached, its record), handed to an engine; each run's log file
    seed_study.py       the study: claims, what each run is scored on, paired comparisons and verdicts
    beta_sweep.py       the β continuum: rate, distortion and bounds of VAEs from β = 0 to 8
    reports.py          Markdown tables and README blocks, from the result dicts only
    study_reports.py    the study's and the sweep's reports, figures and blocks, from their JSON alone
    figures.py          one function per figure of a model's latent space
    study_figures.py    the study's and the β sweep's figures
    ladder.py           the ladder from Davidson et al.'s protocol to our best recipe, and the gap to their published
                        number, from evaluate.py's reports
    their_estimator.py  the published number beside their TensorFlow example's estimator, on the gap's checkpoints
    binarisation_draws.py  the gap's IS-500 on more binarisations of the same test images
    explorer_page.py    the self-contained browser page (explorer_template.html)
"""
