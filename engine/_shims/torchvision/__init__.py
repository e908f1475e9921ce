"""Import-only stand-in for torchvision (see engine/xtuner_env.py for why it exists).

xtuner 0.2.0 imports ``torchvision.transforms`` at module level (its InternVL dataset), but
PyPI's torchvision cannot be imported beside the CPU torch wheel. Nothing the wizard runs
uses torchvision; any real use fails loudly through ``transforms.__getattr__``.
"""

__version__ = "0.0.0+xtuner-wizard-stand-in"
