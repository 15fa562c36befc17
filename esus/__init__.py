"""esus: edge service for building energy. This package composes the four domain packages."""

__version__ = "0.1.0"
