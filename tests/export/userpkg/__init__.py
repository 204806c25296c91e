"""A small user package for the Python rewriter tests: models, helpers
imported under other names, an autograd Function.  Nothing in it knows
about torchrw."""
from .models import Scaler  # noqa: F401  (the class has two names)
