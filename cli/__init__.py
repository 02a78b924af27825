"""The `sessionflow` command and its tools: the top floor, which imports the services."""
