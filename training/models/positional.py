"""Fixed 2-D sine-cosine position embedding for the tokens of a feature map."""

from __future__ import annotations

import torch

# The usual transformer frequency base: wavelengths from 2*pi up to 10000*2*pi positions.
_BASE = 10000.0


def sincos_2d(height: int, width: int, dim: int, device: torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(height*width, dim) embedding of row-major grid positions; dim must be a multiple of 4.

    A quarter of the channels encodes each of sin(x), cos(x), sin(y), cos(y) at geometrically
    spaced frequencies, so any two grid positions get different vectors.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine embedding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / _BASE ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    angle_x = xs.reshape(-1, 1) * omega
    angle_y = ys.reshape(-1, 1) * omega
    embedding = torch.cat([angle_x.sin(), angle_x.cos(), angle_y.sin(), angle_y.cos()], dim=1)
    return embedding.to(dtype)
