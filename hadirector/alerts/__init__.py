"""hadirector.alerts package."""
