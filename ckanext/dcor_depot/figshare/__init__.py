"""Import of DCOR's reference data from figshare."""
