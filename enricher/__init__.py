"""The enricher: each completed session's transcript from the Agntix API, one record per session."""
