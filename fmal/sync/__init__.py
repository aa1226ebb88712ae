"""The annotation loop run against a live annotation tool (``fmal sync``): Label Studio."""
