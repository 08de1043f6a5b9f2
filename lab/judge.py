"""The judge: a small CNN classifier of the dataset's images, which scores what a generative model draws.

It is not a generative model (it has no encode or decode), so it has its own checkpoint kind,
"classifier", which models.load_checkpoint refuses and load_judge alone reads.

    python evaluate.py --train_classifier     # trains it -> checkpoints/judges/<dataset>_cnn.pt
"""
import math
import os

import torch
import torch.nn as nn

import data
import models
from lab.files import UserError, writable_dir

JUDGE_PATH = os.path.join("checkpoints", "judges", "{dataset}_cnn.pt")  # under the default --checkpoint_dir
# the committed judges of the built-in datasets, wherever the scripts run from
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIDENT = 0.9  # a generated image "is a digit" when the judge gives one class at least this probability
ACCURACY_BAR = 0.985  # the MNIST judge's test accuracy must reach this (tests/test_judge.py)


class DigitClassifier(nn.Module):
    """Two 5x5 conv layers with max-pooling, then two linear layers; about 99 % on the MNIST test set
    after three epochs, which is all a judge of 28x28 samples needs."""
    kind = "classifier"

    def __init__(self, num_classes=10, channels=(32, 64), hidden_dim=128, image_shape=models.IMAGE_SHAPE):
        super().__init__()
        self.model_args = dict(num_classes=num_classes, channels=list(channels), hidden_dim=hidden_dim)
        c1, c2 = channels
        # MNIST's judge as it always was (28 -> 24 -> 12 -> 8 -> 4); other images keep their size through each
        # convolution (padding 2), so that small ones (8 x 8 digits) still have pixels left after two poolings
        padding = 0
        if tuple(image_shape) != models.IMAGE_SHAPE:
            self.model_args["image_shape"] = list(image_shape)
            padding = 2
            if min(image_shape[1:]) < 4:
                raise UserError(f"images of {image_shape[1]} x {image_shape[2]} are too small for the judge (4 x 4 at least)")
        self.features = nn.Sequential(
            nn.Conv2d(image_shape[0], c1, 5, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *image_shape)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden_dim), nn.ReLU(),
                                  nn.Linear(hidden_dim, num_classes))

    def forward(self, x):
        """Class logits of images B x C x H x W in [0, 1] (1 x 28 x 28 for the MNIST family)."""
        return self.head(self.features(x))


def judge_path(dataset, checkpoint_dir="checkpoints", for_writing=False):
    """Where the judge of a dataset's models lives: <checkpoint_dir>/judges/<dataset>_cnn.pt (binarised MNIST:
    the MNIST judge; dataset: its name). To read, a built-in dataset without one there is judged by the project's
    committed judge, so a study in a folder of its own needs no copy; a judge trained is always written there."""
    info = data.DATASETS.get(dataset)
    name = f"{(info and info.judge) or dataset}_cnn.pt"
    path = os.path.join(checkpoint_dir, "judges", name)
    committed = os.path.join(PROJECT_ROOT, "checkpoints", "judges", name)
    if info and not for_writing and not os.path.exists(path) and os.path.exists(committed):
        return committed
    return path


def load_judge(path, map_location="cpu"):
    """The judge stored in path, in eval mode."""
    checkpoint = models.read_checkpoint(path, map_location, kinds=(DigitClassifier.kind,))
    judge = DigitClassifier(**checkpoint["model_args"])
    try:
        judge.load_state_dict(checkpoint["model_state"])
    except RuntimeError as e:
        raise models.CheckpointError(f"{path}: weights do not fit the judge ({str(e).splitlines()[0][:200]})") from None
    return judge.to(map_location).eval()


def load_judge_of(dataset, map_location="cpu", checkpoint_dir="checkpoints"):
    path = judge_path(dataset, checkpoint_dir)
    if not os.path.exists(path):
        raise UserError(f"{path}: no judge for {dataset}; train it with "
                        f"`python evaluate.py --train_classifier --dataset {dataset}`")
    return load_judge(path, map_location)


@torch.no_grad()
def accuracy(judge, split):
    correct = sum((judge(images).argmax(1) == labels).sum().item() for images, labels in split.batches(1000))
    return correct / len(split)


MNIST_STEPS = 3 * math.ceil(55000 / 128)  # what three epochs of MNIST's training images take


def train_judge(splits, epochs=None, batch_size=128, lr=1e-3, seed=0):
    """Adam, three epochs on MNIST's 55 000 training images; as many steps on a smaller dataset (more epochs)."""
    torch.manual_seed(seed)
    train = splits["train"]
    epochs = epochs or max(3, math.ceil(MNIST_STEPS / math.ceil(len(train) / batch_size)))
    if (train.labels < 0).any():
        raise UserError("the judge learns from labelled images; these have no labels (give one sub-folder per "
                        "class, or `labels` in the .npz)")
    judge = DigitClassifier(num_classes=int(train.labels.max()) + 1, image_shape=tuple(train.images.shape[1:]))
    judge = judge.to(train.images.device)
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        judge.train()
        for images, labels in splits["train"].batches(batch_size, shuffle=True, generator=order):
            loss = torch.nn.functional.cross_entropy(judge(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        judge.eval()
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs:  # five lines or so, whatever the epochs
            print(f"classifier epoch {epoch}/{epochs}  validation accuracy {100 * accuracy(judge, splits['val']):.2f}%",
                  flush=True)
    return judge


def train_and_save_judge(splits, path):
    """Train a judge on splits (train_judge) and save it to path with its test accuracy, which it returns."""
    writable_dir(os.path.dirname(path) or ".")
    judge = train_judge(splits)
    test_accuracy = accuracy(judge, splits["test"])
    models.save_checkpoint(path, judge, test_accuracy=test_accuracy)
    return test_accuracy


@torch.no_grad()
def judge_outputs(judge, images, batch_size=1000):
    """One pass of the judge over images: (class probabilities N x classes, its last hidden layer N x hidden_dim).

    Heusel et al. (2017) compute the Fréchet distance in Inception-v3's pool features; for MNIST they
    recommend a network trained on the data itself, and this classifier is ours: its last hidden layer
    (after its ReLU) is the feature space of every sample measure.
    """
    probabilities, features = [], []
    for i in range(0, len(images), batch_size):
        hidden = judge.head[:-1](judge.features(images[i:i + batch_size]))
        features.append(hidden)
        probabilities.append(torch.softmax(judge.head[-1](hidden), 1))
    return torch.cat(probabilities), torch.cat(features)


def verdicts(probabilities):
    """Share of images the judge labels with confidence >= CONFIDENT, and the entropy (bits) of the histogram
    of its predicted classes (log2(10) = 3.32 bits when all ten digits are equally common)."""
    confidence, predicted = probabilities.max(1)
    histogram = torch.bincount(predicted, minlength=probabilities.shape[1]).float() / len(predicted)
    entropy = -(histogram[histogram > 0] * histogram[histogram > 0].log2()).sum().item()
    return {"confident": (confidence >= CONFIDENT).float().mean().item(), "class_entropy_bits": entropy}


def judge_samples(judge, images):
    """The judge's verdicts on images (verdicts)."""
    return verdicts(judge_outputs(judge, images)[0])


def judge_features(judge, images, batch_size=1000):
    """The judge's features of images (judge_outputs)."""
    return judge_outputs(judge, images, batch_size)[1]
