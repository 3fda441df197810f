"""ckanext-dcor_depot: where DCOR research data live.

The package is layered (see ``docs/architecture.md``); imports only go
down: ``plugin`` > ``cli`` > ``views``, ``helpers``, ``uploader`` >
``logic`` > ``operations`` > ``records`` | ``storage`` > the base
modules (``config``, ``errors``, ``names``, ``progress``,
``validators``, ``sample_data``).
"""
