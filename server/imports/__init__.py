"""Importers from other monitors (Uptime Kuma, LibreNMS) to pocketnoc config files for review."""
