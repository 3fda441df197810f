"""CKAN's database: reading and writing resources, search index updates."""
