"""Notifications: outbox, worker, channels, routing, escalation, Web Push, email, dead-man switch, summaries.

Kept import-light on purpose: store.alerts imports the outbox from here inside every alert transaction.
Start and stop the worker through server.notify.runtime.
"""
