"""The preflight of a digest: offline checks on what would be sent (`offline`), the links in it
fetched (`links`), each problem a `Finding` about one story or the issue (`findings`)."""
