"""hadirector.sync package."""
