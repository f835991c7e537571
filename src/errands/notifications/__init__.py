"""Notifications that bring people back to a task: email, webhooks, the browser.

A task event someone may want to hear about writes an outbox row in its own transaction
(``errands.store.events.record``); the workers' ``notifications`` duty composes each task's
rows into one message per user and channel (``compose``) and delivers them (``deliver``).
"""
