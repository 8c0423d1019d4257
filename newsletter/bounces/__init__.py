"""Returned mail and complaints: reading them, and acting on them."""
