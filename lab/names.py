"""Names the study and its reports share, in a module of their own so that the reports import no training code."""
MODEL_KINDS = ("autoencoder", "vae")
SAMPLERS = ("prior", "gaussian", "gmm")  # N(0, I); a Gaussian fitted to the training codes; a 10-component mixture
