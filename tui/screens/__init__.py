"""One module per wizard step. Screens never import each other (an import-linter contract)."""
