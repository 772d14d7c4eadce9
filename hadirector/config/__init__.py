"""Configuration: typed frozen schema, TOML loading with full validation, diffs. Pure."""
