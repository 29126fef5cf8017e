"""The library version, recorded in generated modules and training metrics."""
__version__ = "0.1.0"
