"""converter."""
