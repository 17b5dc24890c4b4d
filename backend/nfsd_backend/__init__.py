"""blender_nfsd backend: distil Stable Diffusion into a NeRF with NFSD, SDI or SDS, then export a
textured mesh. See the repository README for the command line and DESIGN notes."""

__version__ = "0.1.0"
