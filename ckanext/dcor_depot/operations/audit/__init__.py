"""The audit: the database against the store and the depots."""
