"""Text -> expression: what a user types is checked (`text`), embedded by the frozen MiniLM (`encoder`,
`minilm`), read against the expression vocabulary (`vocabulary`, `vocabulary.toml`) by the conditioning network
(`conditioning`, trained on the generated corpus by `train` from `corpus`), behind one call (`interpret`)."""
