"""What CKAN calls: actions, auth rules, commit hooks, uploader, job plan."""
