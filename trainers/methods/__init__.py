"""Training methods, one class per file, each registered in `METHODS` by `@register_method`
(trainers/methods/base.py says what a method holds). Importing this package registers the built-in
ones: esm, ssm, dsm, ncsn, ddpm (the order of the GUI's combo and the CLI's choices)."""
from .base import METHODS, Level, LossBins, Method, method_class, register_method  # noqa: F401
from . import esm, ssm, dsm, ncsn, ddpm  # noqa: F401,E401  (registers them)
from .ddpm import DDPM, ddpm_elbo_weights, ddpm_loss  # noqa: F401
from .dsm import DSM, dsm_loss  # noqa: F401
from .esm import ESM, esm_loss  # noqa: F401
from .ncsn import NCSN, ncsn_loss  # noqa: F401
from .ssm import SSM, ssm_loss  # noqa: F401

# ... then every other module of this folder, by name: a new method file registers itself with no edit here
import importlib as _importlib
import pkgutil as _pkgutil

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    _importlib.import_module(f"{__name__}.{_module}")
