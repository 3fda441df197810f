"""Import of DCOR's reference data from figshare.

``metadata`` decides what an article version becomes (pure), ``client``
talks to the figshare API, ``importer`` puts it into depot, CKAN and S3.
"""
