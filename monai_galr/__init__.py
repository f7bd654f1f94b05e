"""monai-galr: learned group actions on disentangled latent representations, for MONAI."""
__version__ = "0.1.0"
