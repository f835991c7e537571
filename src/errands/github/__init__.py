"""GitHub as a forge: signed webhooks, App / token auth, a rate-limit-aware REST client,
issue import and sync, pull requests and merges through the API.

The lower modules (``signature``, ``sanitize``, ``auth``, ``client``, ``rest``, ``gitauth``)
know nothing of the workflow; ``sync`` (the ``github`` job's stage) and ``routes`` (the
webhook endpoint) tie them to tasks. The workflow reaches GitHub only through the Forge seam
(:mod:`errands.forges.github`), never by importing this package.
"""
