"""The Textual face of xtuner-wizard. Thin: it calls ``engine`` and renders.

Keep this file empty of imports: the console script imports ``tui.launcher`` for every
headless command too, and those must not pay for Textual.
"""
