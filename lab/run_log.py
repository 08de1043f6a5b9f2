"""TensorBoard runs: one fresh folder per trained model, and the HPARAMS summary (training and evaluate.py
both write to it)."""
import os
import time


def make_log_dir(logdir, name):
    """A fresh TensorBoard run folder <logdir>/<name>-<date>-<time>[-<n>] (never an existing one)."""
    stem = os.path.join(logdir, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = stem, 1
    while True:
        try:
            os.makedirs(path)  # fails if it exists, even when another process made it a moment ago
            return path
        except FileExistsError:
            n += 1
            path = f"{stem}-{n}"


def log_hparams(writer, kind, config, final_metrics, step):
    """The run's hyperparameters with its final metrics, for TensorBoard's HPARAMS tab."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary
    hparams = {k: (str(v) if isinstance(v, (list, tuple)) or v is None else v) for k, v in config.items()}
    hparams["kind"] = kind
    for summary in hparams_summary(hparams, final_metrics):
        writer.file_writer.add_summary(summary)
    for k, v in final_metrics.items():
        writer.add_scalar(k, v, step)


def add_to_tensorboard_run(checkpoint_path, kind, result):
    """Append evaluate.py's metrics to the TensorBoard run that trained this checkpoint, if that run is here."""
    import models
    from torch.utils.tensorboard import SummaryWriter
    config = models.read_checkpoint(checkpoint_path).get("config") or {}
    log_dir = config.get("log_dir")
    if not log_dir or not os.path.isdir(log_dir):
        return
    with SummaryWriter(log_dir) as writer:
        numbers = {f"eval/{k}": v for k, v in result.items()  # not the notes (nll_skipped) nor a measure not taken
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        log_hparams(writer, kind, config, numbers, config.get("epochs", 0))
