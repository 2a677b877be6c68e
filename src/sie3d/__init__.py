"""sie3d: one face photo + a sentence -> an expressive, rigged 3D head avatar."""

__version__ = "0.1.0"
