"""Local validation: evaluate a bundle on labelled local cases and recalibrate it (numpy only, no torch)."""
