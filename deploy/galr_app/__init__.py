"""MONAI Deploy example app for the monai-galr bundles (see deploy/README.md)."""
