"""What CKAN calls: actions, auth functions, schemas, the rules they apply
and the commit hooks."""
