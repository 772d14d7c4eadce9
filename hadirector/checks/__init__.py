"""hadirector.checks package."""
