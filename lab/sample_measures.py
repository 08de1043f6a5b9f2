"""Numbers that describe a set of generated images, compared with real ones in the judge's feature space
(lab/judge.py: judge_features)."""
import torch

import data
from lab.judge import judge_features, judge_outputs, load_judge_of, verdicts


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


def density_coverage(real_features, fake_features, real_radii, k, batch_size=1000):
    """Density, coverage and precision of generated samples against real ones (Naeem et al. 2020), all from the
    balls around the real points reaching their k-th nearest real neighbour (real_radii):

        density   = (1 / kM) sum_j #{real balls holding fake j}   (about 1 for samples distributed like the data)
        coverage  = share of real balls holding at least one fake  (how much of the data the samples reach)
        precision = share of fakes in at least one real ball       (Kynkäänniemi et al. 2019's, on these balls)

    Unlike Kynkäänniemi et al.'s recall, coverage needs no balls around the fakes, whose radii outliers inflate.
    """
    real, fake = real_features.cpu().float(), fake_features.cpu().float()
    covered = torch.zeros(len(real), dtype=torch.bool)
    balls_holding, precise = 0, 0
    for i in range(0, len(fake), batch_size):
        inside = torch.cdist(fake[i:i + batch_size], real) <= real_radii[None, :]
        balls_holding += inside.sum().item()
        precise += inside.any(1).sum().item()
        covered |= inside.any(0)
    return {"density": balls_holding / (k * len(fake)), "coverage": covered.float().mean().item(),
            "precision": precise / len(fake)}


SAMPLE_MEASURES = ("fid", "density", "coverage", "precision", "confident", "class_entropy_bits")
NEIGHBOURS = 5  # k of density and coverage (Naeem et al. 2020 recommend 5)


def reference_for(dataset, data_dir, num_images, device="cpu", spec=None, checkpoint_dir="checkpoints"):
    """What generated images of a dataset's models are compared with: the judge, the judge's features of the
    first num_images test images and their k-th neighbour radii, and the floor (as many training images
    scored as if they were samples: how far real data is from the test set).

    The judge's dataset is read in grey levels: binarised MNIST's models are compared with grey images, since
    a decoder's output is a pixel probability, the grey level the binary pixels are drawn from."""
    judge = load_judge_of(dataset, device, checkpoint_dir)  # by name; spec: where a user's images are (their PATH)
    info = data.DATASETS.get(dataset)
    splits = data.load_dataset((info and info.judge) or spec or dataset, data_dir, device)
    features = judge_features(judge, splits["test"].images[:num_images])
    radii = kth_neighbour_radius(features, NEIGHBOURS).cpu()
    probabilities, floor_features = judge_outputs(judge, splits["train"].images[:num_images])
    floor = {"fid": frechet_distance(features, floor_features),
             **density_coverage(features, floor_features, radii, NEIGHBOURS), **verdicts(probabilities)}
    return {"judge": judge, "features": features, "radii": radii, "floor": floor}


@torch.no_grad()
def measure_samples(model, codes, reference):
    """Decode the codes; their Fréchet distance, density, coverage and precision against the reference's test
    images, and the judge's confident share and class entropy (one pass of the judge)."""
    device = next(model.parameters()).device
    images = torch.cat([model.decode(z.to(device)) for z in codes.split(2000)])
    probabilities, features = judge_outputs(reference["judge"], images)
    return {"fid": frechet_distance(reference["features"], features),
            **density_coverage(reference["features"], features, reference["radii"], NEIGHBOURS),
            **verdicts(probabilities)}
