"""xtuner-wizard's engine: everything the wizard does, usable without a terminal UI.

Never import Textual (or ``tui``) from here; heavy libraries (torch, transformers, xtuner)
are imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"
