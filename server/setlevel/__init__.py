"""Set-level strategies: a bounded candidate set per session, and the selection run once over it at finish."""
