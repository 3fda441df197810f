"""ckanext-dcor_depot: where DCOR research data live."""
