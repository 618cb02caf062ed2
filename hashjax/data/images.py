"""Photos from disk to the CNN's input: decode, orient, make RGB, crop and resize.

Any size and mode PIL reads (JPEG, PNG, WebP, ...; RGB, grayscale, palette, with or without
alpha) becomes uint8 RGB [size, size, 3]:

  1. the EXIF orientation is applied (phones store photos sideways with a rotation tag);
  2. transparency is composited on white, grayscale and palette images become RGB;
  3. the central square of side (size / (size + 32)) * min(height, width) is cropped and
     resized to size x size with bicubic filtering: the ImageNet evaluation crop EfficientNet's
     weights were measured with (224 of 256).

A file that cannot become an image raises ImageError with one of REASONS, so a converter can
count and list it instead of stopping or dropping it silently.
"""

from __future__ import annotations

import os

import numpy as np

REASONS = ("missing", "empty", "not_an_image", "truncated", "unreadable")
CROP_PADDING = 32
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageError(ValueError):
  """A file that gives no image; `reason` is one of REASONS."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    assert reason in REASONS, reason
    self.path, self.reason, self.detail = path, reason, detail
    super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def _pil():
  try:
    from PIL import Image, ImageOps, UnidentifiedImageError
  except ImportError as e:
    raise ImportError("reading photos needs Pillow: pip install -e '.[real]'") from e
  return Image, ImageOps, UnidentifiedImageError


def to_rgb(image):
  """A PIL image in RGB, transparency composited on white."""
  Image, _, _ = _pil()
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA", "PA"):
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")
  return image.convert("RGB")


def center_crop_resize(image, size: int):
  """The central square (module docstring, step 3) resized to size x size."""
  Image, _, _ = _pil()
  width, height = image.size
  side = max(1, int(round(size / (size + CROP_PADDING) * min(width, height))))
  left, top = (width - side) // 2, (height - side) // 2
  return image.resize((size, size), Image.Resampling.BICUBIC,
                      box=(left, top, left + side, top + side))


def load_image(path: str, size: int = 224) -> np.ndarray:
  """uint8 [size, size, 3] of the photo at `path` (module docstring), or ImageError."""
  Image, ImageOps, UnidentifiedImageError = _pil()
  if not os.path.isfile(path):
    raise ImageError(path, "missing")
  if os.path.getsize(path) == 0:
    raise ImageError(path, "empty")
  try:
    with Image.open(path) as image:
      image.load()  # decode now: a truncated file fails here, not later
      image = ImageOps.exif_transpose(image)
      image = center_crop_resize(to_rgb(image), size)
  except UnidentifiedImageError as e:
    raise ImageError(path, "not_an_image", str(e)) from e
  except (OSError, SyntaxError, ValueError) as e:
    reason = "truncated" if "truncated" in str(e).lower() else "unreadable"
    raise ImageError(path, reason, str(e)) from e
  pixels = np.asarray(image, np.uint8)
  if pixels.shape != (size, size, 3):
    raise ImageError(path, "unreadable", f"decoded to shape {pixels.shape}")
  return pixels


def list_images(directory: str) -> list[str]:
  """The image files under `directory` (by extension, any depth), relative and sorted."""
  found = []
  for root, _, files in os.walk(directory):
    for name in files:
      if name.lower().endswith(EXTENSIONS):
        found.append(os.path.relpath(os.path.join(root, name), directory))
  return sorted(found)
