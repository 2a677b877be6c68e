"""Semantics: from a free-text description of an expression to what conditions the avatar.

`text` checks and cleans what a user types; `encoder` turns it into MiniLM sentence and token embeddings.
"""
