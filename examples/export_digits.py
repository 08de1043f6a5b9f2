"""Write scikit-learn's bundled 8x8 handwritten digits (1 797 images, no download) as your own images would come:

    python examples/export_digits.py            # -> data/digits8x8.npz and data/digits8x8-png/<digit>/<n>.png

then train and explore them like MNIST (docs/own-images.md):

    python train.py --train_autoencoder --train_vae --dataset data/digits8x8.npz
    python explore_latent_space.py --dataset data/digits8x8.npz
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lab.files import write_atomically  # noqa: E402


def digits_as_uint8():
    """The digits' 17 grey levels (0-16) spread over 0-255, their labels and class names."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(np.int64), [str(d) for d in digits.target_names]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output_dir", default="data", help="where the .npz and the folder go (default: %(default)s)")
    args = p.parse_args(argv)
    from PIL import Image
    import io
    images, labels, classes = digits_as_uint8()
    os.makedirs(args.output_dir, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels, classes=np.array(classes))
    write_atomically(os.path.join(args.output_dir, "digits8x8.npz"), buffer.getvalue())
    folder = os.path.join(args.output_dir, "digits8x8-png")
    for i, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(os.path.join(folder, classes[label]), exist_ok=True)
        png = io.BytesIO()
        Image.fromarray(image).save(png, format="PNG")
        write_atomically(os.path.join(folder, classes[label], f"{i:04d}.png"), png.getvalue())
    print(f"{len(images)} images of {images.shape[1]}x{images.shape[2]} -> {args.output_dir}/digits8x8.npz and {folder}/")


if __name__ == "__main__":
    main()
