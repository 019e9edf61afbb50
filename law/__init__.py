"""law package."""
