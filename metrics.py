"""Numbers that describe a trained model, each computed by one small function.

All losses are in nats per image; accuracies are fractions in [0, 1].
"""
import torch

PIXEL_THRESHOLDS = (0.5, 0.6)  # 0.5: a pixel is "ink" when more likely on than off; 0.6: the seed's number


def pixel_accuracy(reconstruction, x, threshold):
    """Fraction of pixels on the same side of `threshold` in the reconstruction and the input."""
    return ((reconstruction > threshold) == (x > threshold)).float().mean()


@torch.no_grad()
def evaluate(model, split, batch_size=1000, seed=0):
    """Mean loss terms and pixel accuracies of model over a data split.

    The VAE's loss draws z ~ q(z|x); a fixed seed makes that draw the same every time, and
    fork_rng keeps this evaluation from moving the training run's random stream.
    """
    was_training = model.training
    model.eval()
    sums = {}
    device = split.images.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for images, _ in split.batches(batch_size):
            n = len(images)
            terms = {f"loss_{k}": v for k, v in model.loss(images).items()}
            reconstruction = model.reconstruct(images)
            for t in PIXEL_THRESHOLDS:
                terms[f"pixel_acc_{t}"] = pixel_accuracy(reconstruction, images, t)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * n
    model.train(was_training)
    return {k: (v / len(split)).item() for k, v in sums.items()}
