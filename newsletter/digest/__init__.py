"""Building a digest: which briefings, in which themes, in which order."""
