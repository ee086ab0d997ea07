"""Small shared utilities (drawing predictions, ...)."""
