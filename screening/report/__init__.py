"""The dermatologist's review: a ranked, self-contained HTML worklist of a screening run."""
