"""Alert rules and their evaluation."""
