"""Where repositories, issues and pull requests live: the Forge seam.

The workflow talks to a :class:`~errands.forges.base.Forge` chosen per project
(:func:`~errands.forges.registry.forge_for`) and never imports a forge's own package. Each
module in this package other than ``base``, ``registry`` and ``local`` is a forge, found by
name at run time: adding GitLab is one new module here defining ``forge(settings)``.
"""
