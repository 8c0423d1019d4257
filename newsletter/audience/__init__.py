"""Subscribers, lists, subscriptions, imports and signed links."""
