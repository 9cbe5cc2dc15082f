"""vrme: micro-expression spotting and recognition, rebuilt end to end."""

__version__ = "0.1.0"
