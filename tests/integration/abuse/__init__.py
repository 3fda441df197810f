"""The abuse suite: hostile names, links, files, answers, settings."""
