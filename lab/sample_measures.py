"""Numbers that describe a set of generated images, compared with real ones in the judge's feature space
(lab/judge.py: judge_features)."""
import torch

import data
from lab.judge import judge_features, judge_samples, load_judge_of


class _GivenFeatures(torch.nn.Identity):
    """Hands features we computed ourselves to torchmetrics, so each image set is passed through the judge once."""

    def __init__(self, num_features):
        super().__init__()
        self.num_features = num_features


def frechet_distance(real_features, fake_features):
    """Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017):

        ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))

    computed by torchmetrics' FrechetInceptionDistance (in float64) with our features in place of Inception's.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    fid = FrechetInceptionDistance(feature=_GivenFeatures(real_features.shape[1]))
    fid.update(real_features.cpu().double(), real=True)
    fid.update(fake_features.cpu().double(), real=False)
    return max(0.0, fid.compute().item())  # the eigenvalue route can land a hair below zero for equal sets


def kth_neighbour_radius(features, k, batch_size=1000):
    """Distance from each point to its k-th nearest other point of the same set."""
    radii = []
    for i in range(0, len(features), batch_size):
        d = torch.cdist(features[i:i + batch_size], features)
        # the (k+1)-th smallest: the point itself is at distance 0 (topk: 10x faster than kthvalue on the CPU)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])
    return torch.cat(radii)


def _share_inside_balls(points, centres, radii, batch_size=1000):
    """Fraction of points that fall inside at least one ball (centre, radius)."""
    inside = 0
    for i in range(0, len(points), batch_size):
        d = torch.cdist(points[i:i + batch_size], centres)
        inside += (d <= radii[None, :]).any(dim=1).sum().item()
    return inside / len(points)


def precision_recall(real_features, fake_features, k=3, real_radii=None):
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points reaching their k-th nearest neighbour.
    precision: share of generated samples inside the real manifold (do the samples look like data?);
    recall: share of real images inside the generated manifold (how much of the data do they cover?).
    real_radii: kth_neighbour_radius(real_features, k), when the caller compares many sets with one reference.
    """
    real, fake = real_features.cpu().float(), fake_features.cpu().float()
    real_radii = kth_neighbour_radius(real, k) if real_radii is None else real_radii
    return {"precision": _share_inside_balls(fake, real, real_radii),
            "recall": _share_inside_balls(real, fake, kth_neighbour_radius(fake, k))}


SAMPLE_MEASURES = ("fid", "precision", "recall", "confident", "class_entropy_bits")
NEIGHBOURS = 3  # k of precision and recall (Kynkäänniemi et al. 2019 use 3)


def reference_for(dataset, data_dir, num_images, device="cpu"):
    """What generated images of a dataset's models are compared with: the judge, the judge's features of the
    first num_images test images and their k-th neighbour radii, and the floor (as many training images
    scored as if they were samples: how far real data is from the test set).

    The judge's dataset is read in grey levels: binarised MNIST's models are compared with grey images, since
    a decoder's output is a pixel probability, the grey level the binary pixels are drawn from."""
    judge = load_judge_of(dataset, device)
    splits = data.load_dataset(data.DATASETS[dataset].judge or dataset, data_dir, device)
    features = judge_features(judge, splits["test"].images[:num_images])
    radii = kth_neighbour_radius(features, NEIGHBOURS).cpu()
    floor_features = judge_features(judge, splits["train"].images[:num_images])
    floor = {"fid": frechet_distance(features, floor_features),
             **precision_recall(features, floor_features, NEIGHBOURS, radii)}
    return {"judge": judge, "features": features, "radii": radii, "floor": floor}


@torch.no_grad()
def measure_samples(model, codes, reference):
    """Decode the codes; their Fréchet distance and precision/recall against the reference's test images, and
    the judge's confident share and class entropy."""
    device = next(model.parameters()).device
    images = torch.cat([model.decode(z.to(device)) for z in codes.split(2000)])
    features = judge_features(reference["judge"], images)
    return {"fid": frechet_distance(reference["features"], features),
            **precision_recall(reference["features"], features, k=NEIGHBOURS, real_radii=reference["radii"]),
            **judge_samples(reference["judge"], images)}
