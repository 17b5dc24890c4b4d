"""Small image helpers shared by previews and comparison grids."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def tensor_to_image(rgb: torch.Tensor) -> Image.Image:
    """[3,H,W] or [H,W,3] in [0,1] -> PIL RGB."""
    array = rgb.detach().float().cpu()
    if array.shape[0] == 3 and array.dim() == 3:
        array = array.permute(1, 2, 0)
    return Image.fromarray((array.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))


def labelled_row(images: list[Image.Image], labels: list[str] | None = None, min_size: int = 256) -> Image.Image:
    """Images side by side (upscaled with nearest-neighbour to at least `min_size`), each with a
    caption strip underneath when labels are given."""
    scale = max(1, -(-min_size // images[0].height))
    tiles = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    caption = 22 if labels else 0
    width = sum(t.width for t in tiles)
    row = Image.new("RGB", (width, tiles[0].height + caption), "white")
    draw = ImageDraw.Draw(row)
    font = ImageFont.load_default()
    x = 0
    for i, tile in enumerate(tiles):
        row.paste(tile, (x, 0))
        if labels:
            draw.text((x + 6, tile.height + 5), labels[i], fill="black", font=font)
        x += tile.width
    return row
