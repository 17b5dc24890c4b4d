"""blender_nfsd backend: distil Stable Diffusion into a NeRF with NFSD, SDI or SDS, then export a
textured mesh. See the repository README and docs/."""

# The one place of the version: pyproject.toml, `nfsd --version` and build.py read it, and the
# extension manifest (blender_manifest.toml, read by Blender as it is) must match it.
__version__ = "0.1.0"
