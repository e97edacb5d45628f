"""Bundles installed with the package: ``starter`` is the default when no --bundle or $SCREEN_BUNDLE is given.

``screening/bundled/starter`` is a link to the repository's ``engines/starter`` in a checkout;
``pip install .`` copies that folder's manifest and ONNX files here as package data.
"""

from pathlib import Path

STARTER = Path(__file__).resolve().parent / "starter"
