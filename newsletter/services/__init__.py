"""The use cases, one module per area, each a service on the app object returning typed
reports: feeds, subscribers, digests, sending, bounces, reports, and readers (what the links
in mail and the web pages do). The CLI and the web call these and nothing below them."""
