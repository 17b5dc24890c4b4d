"""A scripted stand-in for the backend, for the add-on's tests: it speaks the real event protocol
and stdin control (DESIGN.md) and writes real files (PNG previews, a textured .glb), but trains
nothing. Put its parent folder first on PYTHONPATH and `python -m nfsd_backend` runs it."""
