"""Federation: the cities this city trusts (their anchors, for which kinds and scenes, until when), and the
signed statement that tells this city's gates (docs/federation.md)."""
