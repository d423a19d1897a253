"""A differentiable rasteriser of cubic Bézier strokes, in JAX (CLIPasso's stand-in for diffvg).

Each stroke is a cubic Bézier curve (4 control points, pixel coordinates (x, y), the origin at the image's
top-left corner, pixel centres at +0.5) drawn with a constant width. The curve is sampled at `samples` points;
every pixel centre gets its distance to the nearest of the resulting segments, and its coverage is the
fraction of a one-pixel box filter, across a straight edge, that the stroke covers:
clip(width / 2 + 1/2 − distance, 0, 1). Strokes are composited with "over" (ink = 1 − ∏(1 − opacity ·
coverage)), so the gradient reaches every control point through the pixels on its stroke's anti-aliased
edge, as diffvg's does; pixels away from every stroke give none.

Choices where diffvg differs: the curve is a polyline of `samples` points (diffvg finds the closest point on
the curve analytically), and the box-filter coverage is the straight-edge approximation (diffvg integrates
its prefilter over the exact shape). Both converge to the exact curve as `samples` grows and the stroke
curvature is small against a pixel.
"""

import jax
import jax.numpy as jnp


def bezier_points(control, samples: int):
  """Points on cubic Bézier curves: control (..., 4, 2) → (..., samples, 2), t evenly in [0, 1]."""
  t = jnp.linspace(0.0, 1.0, samples, dtype=control.dtype)[:, None]
  p0, p1, p2, p3 = (control[..., i, None, :] for i in range(4))
  s = 1.0 - t
  return s ** 3 * p0 + 3.0 * s ** 2 * t * p1 + 3.0 * s * t ** 2 * p2 + t ** 3 * p3


def polyline_distance(points, pixels):
  """Distance of each pixel (P, 2) to the polyline through points (S, 2) → (P,)."""
  a, b = points[:-1], points[1:]
  ab = b - a
  ap = pixels[:, None, :] - a[None]
  t = jnp.clip((ap * ab).sum(-1) / jnp.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
  d2 = ((ap - t[..., None] * ab) ** 2).sum(-1).min(axis=1)
  return jnp.sqrt(d2 + 1e-12)  # the epsilon keeps the gradient finite on the curve itself


def pixel_centres(height: int, width: int, dtype=jnp.float32):
  """(height · width, 2) pixel centres as (x, y), row-major."""
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=dtype) + 0.5, jnp.arange(width, dtype=dtype) + 0.5, indexing="ij")
  return jnp.stack([xs.ravel(), ys.ravel()], -1)


def stroke_coverage(control, widths, height: int, width: int, *, samples: int = 24):
  """Per-stroke coverage in [0, 1]: control (N, 4, 2), widths (N,) or scalar → (N, height, width)."""
  pixels = pixel_centres(height, width, control.dtype)
  curves = bezier_points(control, samples)
  distance = jax.vmap(polyline_distance, in_axes=(0, None))(curves, pixels)
  half = jnp.broadcast_to(jnp.asarray(widths, control.dtype), (control.shape[0],))[:, None] / 2
  return jnp.clip(half + 0.5 - distance, 0.0, 1.0).reshape(control.shape[0], height, width)


def render_strokes(control, widths, height: int, width: int, *, opacity=1.0, stroke_colour=(0.0, 0.0, 0.0),
                   background=(1.0, 1.0, 1.0), samples: int = 24):
  """An RGB image (height, width, 3) in [0, 1]: strokes of `stroke_colour` composited over `background`.
  CLIPasso draws black strokes on white, the defaults."""
  coverage = stroke_coverage(control, widths, height, width, samples=samples)
  alpha = jnp.broadcast_to(jnp.asarray(opacity, control.dtype), (control.shape[0],))[:, None, None] * coverage
  ink = 1.0 - jnp.prod(1.0 - alpha, axis=0)
  bg, fg = jnp.asarray(background, control.dtype), jnp.asarray(stroke_colour, control.dtype)
  return bg + (fg - bg) * ink[..., None]
