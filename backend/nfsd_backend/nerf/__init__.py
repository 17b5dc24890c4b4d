"""The 3-D side: cameras, the radiance field and its renderer."""
