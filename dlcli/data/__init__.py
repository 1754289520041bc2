"""Datasets and batching over id files."""
